package rabbitmq

import (
	"errors"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

func TestSizeLimit(t *testing.T) {
	tests := []struct {
		err  *amqp.Error
		want int
	}{
		{&amqp.Error{Code: amqp.PreconditionFailed,
			Reason: "PRECONDITION_FAILED - message size 4194456 is larger than configured max size 4194304"}, 4194304},
		{&amqp.Error{Code: amqp.PreconditionFailed,
			Reason: "PRECONDITION_FAILED - message size 536870913 is larger than max size 536870912"}, 536870912},
		{&amqp.Error{Code: amqp.PreconditionFailed, Reason: "PRECONDITION_FAILED - inequivalent arg 'x-max-priority'"}, 0},
		{&amqp.Error{Code: amqp.NotFound, Reason: "NOT_FOUND - message size 5 is larger than max size 4"}, 0},
	}
	for _, tc := range tests {
		if got := sizeLimit(tc.err); got != tc.want {
			t.Errorf("sizeLimit(%q) = %d, want %d", tc.err.Reason, got, tc.want)
		}
	}
}

// Once the broker told its limit, a message over it fails at once, without a round trip that
// would cost the channel and every message unconfirmed on it.
func TestPublishOverAKnownLimitFailsAtOnce(t *testing.T) {
	p := &Publisher{}
	p.maxBody.Store(10)
	err := p.Publish(t.Context(), "q", Message{Body: make([]byte, 11)})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err %v, want ErrTooLarge", err)
	}
}
