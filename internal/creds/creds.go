// Package creds reads service credentials from the environment or from secret files, so
// that passwords never have to appear on a command line.
package creds

import (
	"cmp"
	"fmt"
	"os"
	"strings"
)

// Credentials for one service.
type Credentials struct {
	User     string
	Password string
}

// String never shows the password.
func (c Credentials) String() string {
	if c.Password == "" {
		return c.User
	}
	return c.User + ":***"
}

// FromEnv reads <prefix>_USER and <prefix>_PASSWORD, or the password from the file named
// by <prefix>_PASSWORD_FILE (a Docker or Kubernetes secret; trailing newline removed).
// Setting both the password and the file is an error, as is an unreadable or empty file.
// defUser and defPassword apply when the variables are unset.
func FromEnv(getenv func(string) string, prefix, defUser, defPassword string) (Credentials, error) {
	c := Credentials{User: cmp.Or(getenv(prefix+"_USER"), defUser)}
	pw, file := getenv(prefix+"_PASSWORD"), getenv(prefix+"_PASSWORD_FILE")
	switch {
	case pw != "" && file != "":
		return c, fmt.Errorf("%s_PASSWORD and %s_PASSWORD_FILE are both set: use one", prefix, prefix)
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return c, fmt.Errorf("%s_PASSWORD_FILE: %w", prefix, err)
		}
		c.Password = strings.TrimRight(string(b), "\r\n")
		if c.Password == "" {
			return c, fmt.Errorf("%s_PASSWORD_FILE: %s is empty", prefix, file)
		}
	case pw != "":
		c.Password = pw
	default:
		c.Password = defPassword
	}
	return c, nil
}
