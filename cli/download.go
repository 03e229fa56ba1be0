package cli

import "context"

func downloadCommand() *Command {
	return &Command{Name: "download", Summary: "(not built yet)", Run: func(ctx context.Context, env *Env, args []string) error {
		return failed(errNotBuilt, "")
	}}
}
