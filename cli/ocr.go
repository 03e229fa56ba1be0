package cli

import "context"

func ocrCommand() *Command {
	return &Command{Name: "ocr", Summary: "(not built yet)", Run: func(ctx context.Context, env *Env, args []string) error {
		return failed(errNotBuilt, "")
	}}
}
