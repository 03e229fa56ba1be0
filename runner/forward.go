package runner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pero-worker/pero-worker/function"
	"github.com/pero-worker/pero-worker/internal/message"
	"github.com/pero-worker/pero-worker/internal/rabbitmq"
)

// forwarder sends each processed page on: to the next stage when it succeeded, to the output
// stage with status Failed when it did not. A delivery is acked only after the broker confirmed
// its successor, so a page is never lost, at worst sent twice.
type forwarder struct {
	stage    string
	hostID   string
	version  string // the stage's config version, stamped into every StageLog
	pub      publisher
	dead     *deadLetters
	counters *counters
	log      *slog.Logger
}

// result is one page's outcome as the forwarder needs it.
type result struct {
	job        *job
	out        function.Output
	start, end time.Time
}

// outgoing is a message ready to publish for a result.
type outgoing struct {
	res    result
	queue  string
	body   []byte
	failed bool
}

// forward publishes every result, then acks (or hands back) each delivery.
func (f *forwarder) forward(results []result) {
	if len(results) == 0 {
		return
	}
	msgs := make([]outgoing, 0, len(results))
	for _, r := range results {
		o, err := f.build(r, r.out.Err, false)
		if err != nil {
			f.deadLetter(r, reasonMalformed, err)
			continue
		}
		msgs = append(msgs, o)
	}
	// A next stage without a queue, or a result over the broker's size limit, fails the page to
	// the output stage; when the output stage has no queue or the failure is too large as well,
	// the page goes to the dead-letter queue. At most two rounds.
	retry := f.publish(msgs, func(o outgoing, err error) (outgoing, bool) {
		if o.failed {
			f.deadLetter(o.res, refusal(err), fmt.Errorf("output stage %q: %w", o.queue, err))
			return outgoing{}, false
		}
		cause := fmt.Errorf("next stage %q has no queue: %w", o.queue, err)
		if errors.Is(err, rabbitmq.ErrTooLarge) {
			cause = fmt.Errorf("the result cannot go to stage %q: %w", o.queue, err)
		}
		n, berr := f.build(o.res, cause, true)
		if berr != nil {
			f.deadLetter(o.res, reasonMalformed, berr)
			return outgoing{}, false
		}
		return n, true
	})
	f.publish(retry, func(o outgoing, err error) (outgoing, bool) {
		f.deadLetter(o.res, refusal(err), fmt.Errorf("output stage %q: %w", o.queue, err))
		return outgoing{}, false
	})
}

// refusal is the dead-letter reason of a message the broker will never take.
func refusal(err error) string {
	if errors.Is(err, rabbitmq.ErrTooLarge) {
		return reasonTooLarge
	}
	return reasonUnroutable
}

// publish sends msgs and acks the confirmed ones. Those the broker will never take (no queue,
// too large) go to onRefused, which returns the message for the next round, if any; other
// failures hand the delivery back.
func (f *forwarder) publish(msgs []outgoing, onRefused func(outgoing, error) (outgoing, bool)) []outgoing {
	if len(msgs) == 0 {
		return nil
	}
	items := make([]rabbitmq.Outgoing, len(msgs))
	for i, o := range msgs {
		items[i] = rabbitmq.Outgoing{Queue: o.queue, Msg: rabbitmq.Message{
			Body: o.body, Priority: o.res.job.priority, MessageID: o.res.job.req.GetUuid(),
		}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	errs := f.pub.PublishBatch(ctx, items)
	var next []outgoing
	for i, o := range msgs {
		switch err := errs[i]; {
		case err == nil:
			if aerr := o.res.job.ack.Ack(); aerr != nil {
				// Published but not acked: the broker redelivers it and it is processed again.
				f.log.Warn("ack after forwarding", "uuid", o.res.job.req.GetUuid(), "err", aerr)
				continue
			}
			if o.failed {
				f.counters.failed.Add(1)
			}
		case errors.Is(err, rabbitmq.ErrUnroutable), errors.Is(err, rabbitmq.ErrTooLarge):
			if n, ok := onRefused(o, err); ok {
				next = append(next, n)
			}
		default:
			f.log.Warn("forward failed, message handed back", "uuid", o.res.job.req.GetUuid(), "queue", o.queue, "err", err)
			f.counters.handedBack.Add(1)
			_ = o.res.job.ack.Nack(true)
		}
	}
	return next
}

// build records the stage on the request and encodes its successor. A non-nil fail routes the
// page to the output stage with status Failed; again starts from the body as received.
func (f *forwarder) build(r result, fail error, again bool) (outgoing, error) {
	req := r.job.req
	if again {
		// The first round advanced r.job.req: start again from the message as received.
		var err error
		if req, err = message.Decode(r.job.body); err != nil {
			return outgoing{}, err
		}
	}
	log := &message.StageLog{
		HostId:   f.hostID,
		Start:    timestamppb.New(r.start),
		End:      timestamppb.New(r.end),
		Log:      r.out.Log,
		Version:  f.version,
		Enqueued: enqueued(req),
		Attempt:  req.GetAttempts() + 1,
	}
	var (
		queue string
		err   error
	)
	if fail == nil {
		for _, file := range r.out.Files {
			sum := sha256.Sum256(file.Content)
			message.SetResult(req, &message.Data{
				Name: file.Name, Content: file.Content, Size: int64(len(file.Content)), Sha256: hex.EncodeToString(sum[:]),
			})
		}
		queue, err = message.Advance(req, f.stage, log)
	} else {
		queue, err = message.Fail(req, f.stage, log, fail)
	}
	if err != nil {
		return outgoing{}, err
	}
	body, err := message.Encode(req)
	if err != nil {
		return outgoing{}, err
	}
	r.job.req = req
	return outgoing{res: r, queue: queue, body: body, failed: fail != nil}, nil
}

func (f *forwarder) deadLetter(r result, reason string, cause error) {
	in := incoming{ack: r.job.ack, body: r.job.body, priority: r.job.priority}
	if err := f.dead.send(in, reason, cause, r.job.attempt()); err != nil {
		f.log.Warn("dead-letter failed, message handed back", "err", err)
		f.counters.handedBack.Add(1)
		_ = r.job.ack.Nack(true)
	}
}

// enqueued estimates when the message reached this stage's queue: when the previous stage
// finished, or when it was submitted.
func enqueued(req *message.ProcessingRequest) *timestamppb.Timestamp {
	if n := len(req.GetLogs()); n > 0 && req.Logs[n-1].GetEnd() != nil {
		return req.Logs[n-1].GetEnd()
	}
	return req.GetStartTime()
}
