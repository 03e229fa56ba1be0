package rabbitmq

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Delivery is one message received by a Consumer. Ack or Nack it exactly once, before the
// Consumer is closed.
type Delivery struct {
	Body          []byte
	Priority      uint8
	Redelivered   bool
	Headers       map[string]any
	Tag           uint64
	MessageID     string
	CorrelationID string

	acker    amqp.Acknowledger
	answered atomic.Bool
}

var errAnswered = errors.New("delivery already acknowledged or rejected")

// Ack tells the broker the message is done with. A second Ack or Nack is refused here, since
// the broker would close the channel over the unknown tag and requeue every other delivery.
func (d *Delivery) Ack() error {
	if !d.answered.CompareAndSwap(false, true) {
		return fmt.Errorf("ack delivery %d: %w", d.Tag, errAnswered)
	}
	if err := d.acker.Ack(d.Tag, false); err != nil {
		return fmt.Errorf("ack delivery %d: %w", d.Tag, brokerError(err, nil))
	}
	return nil
}

// Nack rejects the message: back to the queue with requeue, dropped without (the stage queues
// have no dead-letter exchange; publish to DeadLetterQueue first to keep it).
func (d *Delivery) Nack(requeue bool) error {
	if !d.answered.CompareAndSwap(false, true) {
		return fmt.Errorf("nack delivery %d: %w", d.Tag, errAnswered)
	}
	if err := d.acker.Nack(d.Tag, false, requeue); err != nil {
		return fmt.Errorf("nack delivery %d: %w", d.Tag, brokerError(err, nil))
	}
	return nil
}

// Consumer receives the messages of one queue on its own channel, at most prefetch of them
// unacknowledged at a time.
type Consumer struct {
	queue string
	tag   string
	ch    *amqp.Channel
	out   chan *Delivery

	stop     chan struct{} // closed by Cancel or Close: forward no more
	stopOnce sync.Once
	done     chan struct{} // closed when forward returns
	stopped  atomic.Bool   // stop came from Cancel or Close, not from the broker

	cancelOnce sync.Once
	cancelErr  error
	closeOnce  sync.Once
	closeErr   error

	mu  sync.Mutex
	err error
}

// Consume starts a consumer on queue with basic.qos prefetch. ctx bounds the setup only; the
// consumer runs until Cancel, Close, or the channel closes. A missing queue gives
// ErrQueueNotFound.
func (c *Conn) Consume(ctx context.Context, queue string, prefetch int) (*Consumer, error) {
	if queue == "" {
		return nil, fmt.Errorf("consume: %w", errNoQueueName)
	}
	if prefetch <= 0 || prefetch > 65535 {
		return nil, fmt.Errorf("consume %q: prefetch: want 1..65535, got %d", queue, prefetch)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ch, err := c.channel()
	if err != nil {
		return nil, fmt.Errorf("consume %q: %w", queue, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = ch.Close() })
	cons, err := startConsumer(ch, queue, prefetch)
	if !stop() {
		_ = ch.Close()
		return nil, fmt.Errorf("consume %q: %w", queue, context.Cause(ctx))
	}
	if err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("consume %q: %w", queue, err)
	}
	return cons, nil
}

func startConsumer(ch *amqp.Channel, queue string, prefetch int) (*Consumer, error) {
	if err := ch.Qos(prefetch, 0, false); err != nil {
		return nil, fmt.Errorf("set prefetch: %w", brokerError(err, nil))
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	cons := &Consumer{
		queue: queue,
		tag:   "pero-" + hex.EncodeToString(b[:]),
		ch:    ch,
		out:   make(chan *Delivery),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	closes := ch.NotifyClose(make(chan *amqp.Error, 1))
	cancels := ch.NotifyCancel(make(chan string, 1))
	in, err := ch.Consume(queue, cons.tag, false, false, false, false, nil)
	if err != nil {
		return nil, brokerError(err, nil)
	}
	go cons.forward(in, closes, cancels)
	return cons, nil
}

// forward hands deliveries over until stopped or until the broker ends the consumer. amqp091
// posts a channel error to closes, and a broker cancel to cancels, before it closes in.
func (c *Consumer) forward(in <-chan amqp.Delivery, closes <-chan *amqp.Error, cancels <-chan string) {
	defer close(c.done)
	for {
		select {
		case <-c.stop:
			close(c.out)
			// Deliveries already prefetched go back to the queue now, not when the channel closes.
			for d := range in {
				_ = d.Nack(false, true)
			}
			return
		case d, ok := <-in:
			if !ok {
				c.finish(closes, cancels)
				close(c.out)
				return
			}
			del := &Delivery{
				Body:          d.Body,
				Priority:      d.Priority,
				Redelivered:   d.Redelivered,
				Headers:       fromTable(d.Headers),
				Tag:           d.DeliveryTag,
				MessageID:     d.MessageId,
				CorrelationID: d.CorrelationId,
				acker:         d.Acknowledger,
			}
			select {
			case c.out <- del:
			case <-c.stop:
				// Not handed over: it stays unacknowledged on this channel and the nack below
				// requeues it.
				_ = d.Nack(false, true)
				close(c.out)
				for d := range in {
					_ = d.Nack(false, true)
				}
				return
			}
		}
	}
}

// finish records why the deliveries ended when the broker ended them.
func (c *Consumer) finish(closes <-chan *amqp.Error, cancels <-chan string) {
	if c.stopped.Load() {
		return
	}
	var err error
	select {
	case e, ok := <-closes:
		if ok && e != nil {
			err = fmt.Errorf("consumer of %q: %w", c.queue, brokerError(e, nil))
		}
	default:
	}
	if err == nil {
		select {
		case _, ok := <-cancels:
			if ok {
				err = fmt.Errorf("consumer of %q: %w", c.queue, ErrCancelled)
			}
		default:
		}
	}
	if err == nil {
		err = fmt.Errorf("consumer of %q: %w", c.queue, ErrClosed)
	}
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
}

// Deliveries is closed when the consumer is cancelled or closed, or its channel or connection
// closes; Err says which.
func (c *Consumer) Deliveries() <-chan *Delivery { return c.out }

// Err is why Deliveries closed: nil after Cancel or Close (and while open), ErrCancelled when
// the broker cancelled the consumer, ErrClosed (with the broker's reason) when the channel or
// connection went away.
func (c *Consumer) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *Consumer) halt() {
	c.stopOnce.Do(func() {
		c.stopped.Store(true)
		close(c.stop)
	})
}

// Cancel stops new deliveries at once: Deliveries is closed when it returns and messages
// prefetched but not yet handed over go back to the queue. Deliveries already received stay
// ackable until Close.
func (c *Consumer) Cancel() error {
	c.cancelOnce.Do(func() {
		c.halt()
		if err := c.ch.Cancel(c.tag, false); err != nil && !c.ch.IsClosed() {
			c.cancelErr = fmt.Errorf("cancel consumer of %q: %w", c.queue, brokerError(err, nil))
		}
		// Cancel-ok closes amqp091's delivery channel, which ends forward.
		<-c.done
	})
	return c.cancelErr
}

// Close closes the channel; the broker requeues every delivery not yet acknowledged. Safe to
// call more than once.
func (c *Consumer) Close() error {
	c.closeOnce.Do(func() {
		c.halt()
		if err := c.ch.Close(); err != nil && !errors.Is(err, amqp.ErrClosed) {
			c.closeErr = fmt.Errorf("close consumer of %q: %w", c.queue, err)
		}
		<-c.done
	})
	return c.closeErr
}
