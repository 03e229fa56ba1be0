package rabbitmq

import (
	"net/url"
	"strings"
)

// MaskURL hides the password of an amqp://, amqps:// or http(s):// URL: amqp://user:***@host/vhost.
// A URL that cannot be split cleanly is masked more rather than less.
func MaskURL(u string) string {
	start := strings.Index(u, "://")
	if start < 0 {
		start = 0
	} else {
		start += len("://")
	}
	rest := u[start:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	at := strings.LastIndex(rest[:end], "@")
	if at < 0 {
		// A password with an unescaped '/', '?' or '#' ends the authority early; hide everything
		// up to the last '@' rather than print part of it.
		at = strings.LastIndex(rest, "@")
		if at < 0 {
			return u
		}
		end = at
	}
	userinfo := rest[:at]
	colon := strings.Index(userinfo, ":")
	if colon < 0 {
		return u
	}
	return u[:start] + userinfo[:colon] + ":***" + rest[at:]
}

// secretError hides secrets that a lower layer may have copied into an error text (a URL parser
// quoting its input, for example) while keeping the error chain intact for errors.Is and errors.As.
type secretError struct {
	err     error
	secrets []string
}

func (e *secretError) Error() string {
	s := e.err.Error()
	for _, secret := range e.secrets {
		s = strings.ReplaceAll(s, secret, "***")
	}
	return s
}

func (e *secretError) Unwrap() error { return e.err }

// redact wraps err so that none of the secrets (in plain or URL-escaped form) show in its text.
func redact(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	var list []string
	for _, s := range secrets {
		if s == "" {
			continue
		}
		list = append(list, s)
		for _, esc := range []string{url.QueryEscape(s), url.PathEscape(s), url.UserPassword("u", s).String()[2:]} {
			if esc != s {
				list = append(list, esc)
			}
		}
	}
	if len(list) == 0 {
		return err
	}
	return &secretError{err: err, secrets: list}
}
