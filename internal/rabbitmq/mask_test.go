package rabbitmq

import (
	"errors"
	"strings"
	"testing"
)

func TestMaskURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"amqp://pero:secret@127.0.0.1:5672/pero", "amqp://pero:***@127.0.0.1:5672/pero"},
		{"amqps://u:p@host", "amqps://u:***@host"},
		{"amqp://u:p%40ss@host/v?heartbeat=5", "amqp://u:***@host/v?heartbeat=5"},
		{"amqp://host:5672/pero", "amqp://host:5672/pero"},
		{"amqp://user@host/pero", "amqp://user@host/pero"},
		{"http://admin:pw@127.0.0.1:15672", "http://admin:***@127.0.0.1:15672"},
		// An unescaped '/' in the password: mask up to the last '@' rather than leak.
		{"amqp://u:pa/ss@host/pero", "amqp://u:***@host/pero"},
		{"amqp://u:a@b@host/v", "amqp://u:***@host/v"},
		{"u:p@host", "u:***@host"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := MaskURL(tt.in); got != tt.want {
			t.Errorf("MaskURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestRedact(t *testing.T) {
	base := errors.New(`parse "amqp://u:s3cr%2Ft@h": invalid port; raw s3cr/t`)
	err := redact(base, "s3cr/t", "")
	if strings.Contains(err.Error(), "s3cr") {
		t.Errorf("secret shows: %q", err)
	}
	if !errors.Is(err, base) {
		t.Error("redacted error lost its chain")
	}
	if redact(nil, "x") != nil {
		t.Error("redact(nil) != nil")
	}
}
