package cli

import "context"

func stageCommand() *Command {
	return &Command{Name: "stage", Summary: "(not built yet)", Run: func(ctx context.Context, env *Env, args []string) error {
		return failed(errNotBuilt, "")
	}}
}
