package rabbitmq

import (
	"context"
	"errors"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"
)

// stageQueueArgs are exactly the arguments the original pero-worker declares its stage queues
// with. RabbitMQ refuses a redeclaration with other arguments (PRECONDITION_FAILED), so adding
// one here (a dead-letter exchange, a queue type) would break every old client. The value is a
// signed 32-bit integer, the type pika sends.
func stageQueueArgs() amqp.Table { return amqp.Table{"x-max-priority": int32(1)} }

// DeadLetterQueue names the queue that holds the messages stage could not process. The runner
// publishes to it explicitly, with the reason in the headers.
func DeadLetterQueue(stage string) string { return stage + ".dead" }

// QueueInfo is what a passive declare tells about a queue.
type QueueInfo struct {
	Name string
	// Ready counts messages waiting for a consumer; unacknowledged ones are not included.
	Ready     int
	Consumers int
}

var errNoQueueName = errors.New("queue name is empty")

// DeclareStage declares the stage queue and its dead-letter queue: durable classic queues with
// x-max-priority 1 and nothing else. It is idempotent and compatible with queues the original
// declared; a queue that exists with other arguments gives ErrQueueMismatch.
func (c *Conn) DeclareStage(ctx context.Context, stage string) error {
	if stage == "" {
		return fmt.Errorf("declare stage: %w", errNoQueueName)
	}
	err := c.withChannel(ctx, func(ch *amqp.Channel) error {
		for _, q := range []string{stage, DeadLetterQueue(stage)} {
			if _, err := ch.QueueDeclare(q, true, false, false, false, stageQueueArgs()); err != nil {
				return fmt.Errorf("queue %q: %w", q, brokerError(err, ErrQueueMismatch))
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("declare stage %q: %w", stage, err)
	}
	return nil
}

// Inspect reads a queue's ready messages and consumers with a passive declare. A missing queue
// gives ErrQueueNotFound; the broker closes only the throwaway channel, so the Conn stays usable.
func (c *Conn) Inspect(ctx context.Context, queue string) (QueueInfo, error) {
	if queue == "" {
		return QueueInfo{}, fmt.Errorf("inspect queue: %w", errNoQueueName)
	}
	var q amqp.Queue
	err := c.withChannel(ctx, func(ch *amqp.Channel) error {
		var err error
		q, err = ch.QueueDeclarePassive(queue, true, false, false, false, nil)
		return brokerError(err, nil)
	})
	if err != nil {
		return QueueInfo{}, fmt.Errorf("inspect queue %q: %w", queue, err)
	}
	return QueueInfo{Name: q.Name, Ready: q.Messages, Consumers: q.Consumers}, nil
}

// DeleteQueue deletes a queue and the messages in it. With ifEmpty a queue holding messages is
// left alone and the error wraps ErrQueueNotEmpty. Deleting a missing queue succeeds.
func (c *Conn) DeleteQueue(ctx context.Context, queue string, ifEmpty bool) error {
	if queue == "" {
		return fmt.Errorf("delete queue: %w", errNoQueueName)
	}
	err := c.withChannel(ctx, func(ch *amqp.Channel) error {
		_, err := ch.QueueDelete(queue, false, ifEmpty, false)
		return brokerError(err, ErrQueueNotEmpty)
	})
	if err != nil {
		return fmt.Errorf("delete queue %q: %w", queue, err)
	}
	return nil
}

// Purge removes the ready messages of a queue and returns how many it removed. Unacknowledged
// messages stay. A missing queue gives ErrQueueNotFound.
func (c *Conn) Purge(ctx context.Context, queue string) (int, error) {
	if queue == "" {
		return 0, fmt.Errorf("purge queue: %w", errNoQueueName)
	}
	var n int
	err := c.withChannel(ctx, func(ch *amqp.Channel) error {
		var err error
		n, err = ch.QueuePurge(queue, false)
		return brokerError(err, nil)
	})
	if err != nil {
		return 0, fmt.Errorf("purge queue %q: %w", queue, err)
	}
	return n, nil
}
