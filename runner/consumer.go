package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/pero-worker/pero-worker/internal/message"
	"github.com/pero-worker/pero-worker/internal/rabbitmq"
)

// publishTimeout bounds the wait for one publisher confirm (or one batch of them).
const publishTimeout = 30 * time.Second

// acker answers one delivery; *rabbitmq.Delivery is one.
type acker interface {
	Ack() error
	Nack(requeue bool) error
}

// publisher is the part of *rabbitmq.Publisher the runner uses.
type publisher interface {
	Publish(ctx context.Context, queue string, m rabbitmq.Message) error
	PublishBatch(ctx context.Context, items []rabbitmq.Outgoing) []error
}

// source is the part of *rabbitmq.Consumer the runner uses.
type source interface {
	Deliveries() <-chan *rabbitmq.Delivery
	Cancel() error
	Close() error
	Err() error
}

var (
	_ acker     = (*rabbitmq.Delivery)(nil)
	_ publisher = (*rabbitmq.Publisher)(nil)
	_ source    = (*rabbitmq.Consumer)(nil)
)

// incoming is one delivery as the triage sees it.
type incoming struct {
	ack         acker
	body        []byte
	priority    uint8
	redelivered bool
	headers     map[string]any
}

// job is a decoded message addressed to this stage, ready to be processed.
type job struct {
	ack      acker
	body     []byte // as received: dead-lettered as is, decoded again when a forward must change course
	priority uint8
	req      *message.ProcessingRequest
}

// suspect reports a message that was in a batch when a runner died (or was handed back by one).
func (j *job) suspect() bool { return j.req.GetAttempts() > 0 }

// attempt is the 1-based delivery this processing is.
func (j *job) attempt() int32 { return j.req.GetAttempts() + 1 }

// consumer turns deliveries into jobs. Before anything is processed it
//   - dead-letters a body that does not decode, is addressed to another stage or has no stage
//     after this one;
//   - counts redeliveries (see the package doc): a counted message goes back to the tail of the
//     queue with its Attempts incremented (confirmed, then the original is acked), or to the
//     dead-letter queue once a suspect has been delivered MaxDeliveries times.
type consumer struct {
	stage         string
	maxDeliveries int
	src           source
	pub           publisher
	dead          *deadLetters
	suspects      suspectRecords
	counters      *counters
	clock         Clock
	log           *slog.Logger

	jobs chan *job // closed when the deliveries end

	startOnce, stopOnce sync.Once
	wg                  sync.WaitGroup
	stop                context.CancelFunc
}

func newConsumer(stage string, maxDeliveries, prefetch int, src source, pub publisher, dead *deadLetters,
	suspects suspectRecords, cnt *counters, clk Clock, log *slog.Logger) *consumer {
	return &consumer{
		stage:         stage,
		maxDeliveries: maxDeliveries,
		src:           src,
		pub:           pub,
		dead:          dead,
		suspects:      suspects,
		counters:      cnt,
		clock:         clk,
		log:           log,
		jobs:          make(chan *job, prefetch+1),
		stop:          func() {},
	}
}

// Start reads deliveries until they end. ctx bounds only the waits between failed attempts to
// republish; a republish in progress completes.
func (c *consumer) Start(ctx context.Context) {
	c.startOnce.Do(func() {
		ctx, c.stop = context.WithCancel(ctx)
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.run(ctx)
		}()
	})
}

// cancel stops new deliveries at once without waiting for the triage in progress.
func (c *consumer) cancel() {
	if err := c.src.Cancel(); err != nil {
		c.log.Debug("cancel consumer", "err", err)
	}
}

// Stop cancels the consumer: deliveries not yet handed over go back to the queue at once.
// It waits until the jobs channel is closed. Safe twice and before Start.
func (c *consumer) Stop() {
	c.stopOnce.Do(func() {
		c.cancel()
		c.stop()
	})
	c.startOnce.Do(func() { close(c.jobs) }) // never started: nothing will close it
	c.wg.Wait()
}

func (c *consumer) run(ctx context.Context) {
	defer close(c.jobs)
	failures := 0
	for d := range c.src.Deliveries() {
		in := incoming{ack: d, body: d.Body, priority: d.Priority, redelivered: d.Redelivered, headers: d.Headers}
		j, err := c.triage(in)
		if err != nil {
			// The broker refused what triage had to publish: hand the message back and slow
			// down, so a broker in trouble is not hammered with the same message.
			failures++
			if nerr := d.Nack(true); nerr != nil {
				c.log.Debug("nack", "err", nerr)
			}
			if failures == 1 || failures%20 == 0 {
				c.log.Warn("cannot triage message, handed back", "err", err, "failures", failures)
			}
			sleep(ctx, c.clock, backoff(failures-1, 100*time.Millisecond, 10*time.Second))
			continue
		}
		if failures > 0 {
			c.log.Info("triage recovered", "after_failures", failures)
			failures = 0
		}
		if j != nil {
			c.jobs <- j // cannot block: the channel holds a full prefetch window
		}
	}
}

// triage decides what happens to a delivery before processing: it returns the job to process,
// or nil when the delivery was answered here (dead-lettered, or requeued with its count).
func (c *consumer) triage(in incoming) (*job, error) {
	req, err := message.Decode(in.body)
	switch {
	case err != nil:
		return nil, c.dead.send(in, reasonMalformed, fmt.Errorf("cannot decode: %w", err), 0)
	case message.CurrentStage(req) != c.stage:
		return nil, c.dead.send(in, reasonWrongStage,
			fmt.Errorf("%w: the message is addressed to %q", message.ErrWrongStage, message.CurrentStage(req)), req.GetAttempts())
	case len(req.GetProcessingStages()) < 2:
		return nil, c.dead.send(in, reasonNoNextStage,
			errors.New("the route ends at this stage: no output stage to send the result to"), req.GetAttempts())
	}
	if !in.redelivered {
		return &job{ack: in.ack, body: in.body, priority: in.priority, req: req}, nil
	}
	crashed := false
	if req.GetAttempts() > 0 {
		// A suspect: it counts a delivery only if it was being processed alone when its
		// runner ended; one merely held in the prefetch window goes on as it is.
		crashed, err = c.suspects.crashed(req.GetUuid())
		if err != nil {
			c.log.Warn("cannot read the suspect record: not counting this delivery", "uuid", req.GetUuid(), "err", err)
		}
		if !crashed {
			return &job{ack: in.ack, body: in.body, priority: in.priority, req: req}, nil
		}
	}
	// A first redelivery counts one delivery for every message of the batch that was in
	// flight (the culprit is not known yet) and makes them suspects, each processed alone from
	// now on; later ones count only the suspect that was processed alone.
	done := req.GetAttempts() + 1 // deliveries that ended without a result, this one included
	if req.GetAttempts() > 0 && int(done) >= c.maxDeliveries {
		c.log.Warn("message dead-lettered after repeated deliveries", "uuid", req.GetUuid(), "deliveries", done)
		if err := c.dead.send(in, reasonMaxDeliveries,
			fmt.Errorf("delivered %d times without finishing (max_deliveries %d)", done, c.maxDeliveries), done); err != nil {
			return nil, err
		}
		c.forget(req.GetUuid(), crashed)
		return nil, nil
	}
	req.Attempts = done
	body, err := message.Encode(req)
	if err != nil {
		return nil, c.dead.send(in, reasonMalformed, err, done)
	}
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	if err := c.pub.Publish(ctx, c.stage, rabbitmq.Message{Body: body, Priority: in.priority, MessageID: req.GetUuid()}); err != nil {
		if errors.Is(err, rabbitmq.ErrTooLarge) {
			// Its count made it too large to go back: handing it back would loop.
			return nil, c.dead.send(in, reasonTooLarge, fmt.Errorf("requeue with its delivery count: %w", err), done)
		}
		return nil, fmt.Errorf("requeue redelivered message %s: %w", req.GetUuid(), err)
	}
	if err := in.ack.Ack(); err != nil {
		// The copy is queued; the original comes back once more and is counted again.
		c.log.Warn("ack after requeue", "uuid", req.GetUuid(), "err", err)
	}
	c.forget(req.GetUuid(), crashed)
	c.counters.requeued.Add(1)
	c.log.Info("redelivered message requeued with its count", "uuid", req.GetUuid(), "attempts", done)
	return nil, nil
}

// forget removes the suspect record of a message, when it had one, once its count is in the
// message.
func (c *consumer) forget(uuid string, recorded bool) {
	if !recorded {
		return
	}
	if err := c.suspects.end(uuid); err != nil {
		c.log.Warn("cannot remove the suspect record", "uuid", uuid, "err", err)
	}
}
