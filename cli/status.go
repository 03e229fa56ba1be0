package cli

import "context"

func statusCommand() *Command {
	return &Command{Name: "status", Summary: "(not built yet)", Run: func(ctx context.Context, env *Env, args []string) error {
		return failed(errNotBuilt, "")
	}}
}
