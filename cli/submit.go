package cli

import "context"

func submitCommand() *Command {
	return &Command{Name: "submit", Summary: "(not built yet)", Run: func(ctx context.Context, env *Env, args []string) error {
		return failed(errNotBuilt, "")
	}}
}
