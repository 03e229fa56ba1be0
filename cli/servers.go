package cli

import "context"

func serversCommand() *Command {
	return &Command{Name: "servers", Summary: "(not built yet)", Run: func(ctx context.Context, env *Env, args []string) error {
		return failed(errNotBuilt, "")
	}}
}
