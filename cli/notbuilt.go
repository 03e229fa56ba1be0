package cli

import "errors"

// errNotBuilt marks a subcommand whose implementation is not in this build.
var errNotBuilt = errors.New("not available in this build")
