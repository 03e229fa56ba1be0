package runner

import (
	"context"
	"fmt"
	"log/slog"
	"maps"

	"github.com/pero-worker/pero-worker/internal/rabbitmq"
)

// Reasons written to the x-pero-reason header of a dead-lettered message.
const (
	reasonMalformed     = "malformed"      // the body is not a valid ProcessingRequest
	reasonWrongStage    = "wrong-stage"    // the message is addressed to another stage
	reasonNoNextStage   = "no-next-stage"  // the route ends at this stage
	reasonMaxDeliveries = "max-deliveries" // delivered max_deliveries times without finishing
	reasonUnroutable    = "unroutable"     // neither the next stage's nor the output queue exists
	reasonTooLarge      = "too-large"      // its result, or its failure, is over the broker's message size limit
)

// Headers of a dead-lettered message.
const (
	HeaderReason     = "x-pero-reason"     // one of the reasons above
	HeaderError      = "x-pero-error"      // the error text
	HeaderStage      = "x-pero-stage"      // the stage that gave up
	HeaderContainer  = "x-pero-container"  // the runner that gave up
	HeaderDeliveries = "x-pero-deliveries" // deliveries that ended without a result (int32)
	HeaderDeadAt     = "x-pero-dead-at"    // when (AMQP timestamp)
)

// deadLetters publishes messages to the stage's dead-letter queue, body exactly as received so
// that it can be replayed into the stage, with headers naming the reason.
type deadLetters struct {
	stage     string
	container string
	pub       publisher
	counters  *counters
	clock     Clock
	log       *slog.Logger
}

// send publishes the delivery to the dead-letter queue and, once the broker confirmed, acks it.
func (d *deadLetters) send(in incoming, reason string, cause error, deliveries int32) error {
	h := maps.Clone(in.headers)
	if h == nil {
		h = map[string]any{}
	}
	h[HeaderReason] = reason
	h[HeaderError] = cause.Error()
	h[HeaderStage] = d.stage
	h[HeaderContainer] = d.container
	h[HeaderDeliveries] = deliveries
	h[HeaderDeadAt] = d.clock.Now().UTC()
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	q := rabbitmq.DeadLetterQueue(d.stage)
	if err := d.pub.Publish(ctx, q, rabbitmq.Message{Body: in.body, Priority: in.priority, Headers: h}); err != nil {
		return fmt.Errorf("dead-letter to %q (%s): %w", q, reason, err)
	}
	if err := in.ack.Ack(); err != nil {
		d.log.Warn("ack after dead-lettering", "err", err)
	}
	d.counters.deadLettered.Add(1)
	d.log.Warn("message dead-lettered", "reason", reason, "err", cause, "queue", q)
	return nil
}
