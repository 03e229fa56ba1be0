package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"

	amqp "github.com/rabbitmq/amqp091-go"
)

// seqHeader carries a message's delivery tag so that a basic.return, which names no tag, can be
// matched to its publish (the .NET client does the same with x-dotnet-pub-seq-no). Consumers of
// this package never see it.
const seqHeader = "x-pero-publish-seq"

// Message is one message to publish.
type Message struct {
	Body []byte
	// Priority is the AMQP priority; stage queues honour 0 and 1 (x-max-priority 1).
	Priority uint8
	// Headers must hold AMQP field values: bool, integers, floats, string, []byte, time.Time,
	// []any, nested map[string]any.
	Headers       map[string]any
	MessageID     string
	CorrelationID string
}

// Outgoing is one item of PublishBatch.
type Outgoing struct {
	Queue string
	Msg   Message
}

// Publisher publishes persistent, mandatory messages to queues through the default exchange
// on one channel in confirm mode. It is safe for concurrent use. When its channel closes (a
// broker error on the channel) the next publish opens a new one; when the connection is gone,
// publishes fail with ErrClosed.
//
// A message over the broker's max_message_size makes the broker close the channel, which fails
// every message still unconfirmed on it. The broker's reason names its limit: the messages over
// it fail with ErrTooLarge, the others with ErrClosed (publish them again), and later messages
// over it fail with ErrTooLarge at once, without costing the channel.
type Publisher struct {
	conn *Conn

	mu      sync.Mutex // serialises sends so each message's delivery tag is known before it goes out
	cur     *pubChannel
	closed  bool
	wg      sync.WaitGroup // dispatch goroutines
	maxBody atomic.Int64   // the broker's max_message_size once a refusal told it; 0 unknown
}

// pubChannel is one channel generation of a Publisher with the confirms it still waits for.
type pubChannel struct {
	ch       *amqp.Channel
	returns  chan amqp.Return
	confirms chan amqp.Confirmation
	closes   chan *amqp.Error

	mu      sync.Mutex
	pending map[uint64]*confirmWait
	err     error // set once the channel is closed and every waiter answered

	maxBody *atomic.Int64 // the Publisher's, set when the broker refuses a message for its size
}

type confirmWait struct {
	queue    string
	size     int    // body bytes, what the broker's max_message_size limits
	returned string // reply text of a basic.return, empty when routed
	done     chan error
}

// NewPublisher opens a channel in confirm mode.
func (c *Conn) NewPublisher() (*Publisher, error) {
	p := &Publisher{conn: c}
	if _, err := p.channel(); err != nil {
		return nil, fmt.Errorf("new publisher: %w", err)
	}
	return p, nil
}

// channel returns the open channel, opening a new one after the last closed. Called with p.mu held.
func (p *Publisher) channel() (*pubChannel, error) {
	if p.cur != nil && !p.cur.ch.IsClosed() {
		return p.cur, nil
	}
	ch, err := p.conn.channel()
	if err != nil {
		return nil, err
	}
	if err := ch.Confirm(false); err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("enable publisher confirms: %w", brokerError(err, nil))
	}
	pc := &pubChannel{
		ch:      ch,
		pending: make(map[uint64]*confirmWait),
		maxBody: &p.maxBody,
	}
	pc.returns = ch.NotifyReturn(make(chan amqp.Return, 16))
	pc.confirms = ch.NotifyPublish(make(chan amqp.Confirmation, 256))
	pc.closes = ch.NotifyClose(make(chan *amqp.Error, 1))
	p.cur = pc
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		pc.dispatch()
	}()
	return pc, nil
}

// dispatch answers the waiters. amqp091 hands a basic.return to the returns channel before it
// hands the basic.ack of the same message to the confirms channel, so draining the returns
// before each confirmation sees every return that belongs to it.
func (pc *pubChannel) dispatch() {
	returns, confirms, closes := pc.returns, pc.confirms, pc.closes
	var closeErr error = ErrClosed
	limit := 0 // the broker's max_message_size, when it closed the channel over a message's size
	for returns != nil || confirms != nil || closes != nil {
		select {
		case r, ok := <-returns:
			if !ok {
				returns = nil
				continue
			}
			pc.returned(r)
		case c, ok := <-confirms:
			if !ok {
				confirms = nil
				continue
			}
			pc.drainReturns(&returns)
			pc.confirm(c)
		case e, ok := <-closes:
			if !ok {
				closes = nil
				continue
			}
			if e != nil {
				closeErr = fmt.Errorf("%w: publisher channel: %w", ErrClosed, e)
				if limit = sizeLimit(e); limit > 0 {
					pc.maxBody.Store(int64(limit))
				}
			}
		}
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.err = closeErr
	for tag, w := range pc.pending {
		if limit > 0 && w.size > limit {
			w.done <- fmt.Errorf("publish to %q: %w: %d bytes, the broker takes at most %d", w.queue, ErrTooLarge, w.size, limit)
		} else {
			w.done <- fmt.Errorf("publish to %q: unconfirmed: %w", w.queue, closeErr)
		}
		delete(pc.pending, tag)
	}
}

// maxSizeReason matches the reason RabbitMQ closes a channel with when a message's body is over
// its max_message_size ("message size 5000 is larger than configured max size 4096").
var maxSizeReason = regexp.MustCompile(`message size \d+ is larger than (?:configured )?max size (\d+)`)

// sizeLimit returns the broker's max_message_size when e is its refusal of a message for its
// size, 0 otherwise.
func sizeLimit(e *amqp.Error) int {
	if e.Code != amqp.PreconditionFailed {
		return 0
	}
	m := maxSizeReason.FindStringSubmatch(e.Reason)
	if m == nil {
		return 0
	}
	n, err := strconv.Atoi(m[1])
	if err != nil {
		return 0
	}
	return n
}

func (pc *pubChannel) drainReturns(returns *chan amqp.Return) {
	for *returns != nil {
		select {
		case r, ok := <-*returns:
			if !ok {
				*returns = nil
				return
			}
			pc.returned(r)
		default:
			return
		}
	}
}

func (pc *pubChannel) returned(r amqp.Return) {
	tag, ok := r.Headers[seqHeader].(int64)
	if !ok {
		return
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if w := pc.pending[uint64(tag)]; w != nil {
		w.returned = fmt.Sprintf("%d %s", r.ReplyCode, r.ReplyText)
	}
}

func (pc *pubChannel) confirm(c amqp.Confirmation) {
	pc.mu.Lock()
	w := pc.pending[c.DeliveryTag]
	delete(pc.pending, c.DeliveryTag)
	pc.mu.Unlock()
	switch {
	case w == nil:
	case !c.Ack:
		w.done <- fmt.Errorf("publish to %q: %w", w.queue, ErrNacked)
	case w.returned != "":
		w.done <- fmt.Errorf("publish to %q: %w: no queue named %q (%s)", w.queue, ErrUnroutable, w.queue, w.returned)
	default:
		w.done <- nil
	}
}

// send publishes one message and returns what to wait on. Called with p.mu held.
func (p *Publisher) send(ctx context.Context, queue string, m Message) (*confirmWait, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if p.closed {
		return nil, fmt.Errorf("publish to %q: %w: publisher closed", queue, ErrClosed)
	}
	if queue == "" {
		return nil, fmt.Errorf("publish: %w", errNoQueueName)
	}
	if limit := p.maxBody.Load(); limit > 0 && int64(len(m.Body)) > limit {
		return nil, fmt.Errorf("publish to %q: %w: %d bytes, the broker takes at most %d", queue, ErrTooLarge, len(m.Body), limit)
	}
	pc, err := p.channel()
	if err != nil {
		return nil, fmt.Errorf("publish to %q: %w", queue, err)
	}
	tag := pc.ch.GetNextPublishSeqNo()
	headers, err := toTable(m.Headers)
	if err != nil {
		return nil, fmt.Errorf("publish to %q: headers: %w", queue, err)
	}
	headers[seqHeader] = int64(tag)
	w := &confirmWait{queue: queue, size: len(m.Body), done: make(chan error, 1)}
	pc.mu.Lock()
	if pc.err != nil {
		pc.mu.Unlock()
		return nil, fmt.Errorf("publish to %q: %w", queue, pc.err)
	}
	pc.pending[tag] = w
	pc.mu.Unlock()
	dc, err := pc.ch.PublishWithDeferredConfirm("", queue, true, false, amqp.Publishing{
		Headers:       headers,
		DeliveryMode:  amqp.Persistent,
		Priority:      m.Priority,
		MessageId:     m.MessageID,
		CorrelationId: m.CorrelationID,
		Body:          m.Body,
	})
	if err == nil && (dc == nil || dc.DeliveryTag != tag) {
		// Only sends under p.mu use this channel, so the tag cannot move.
		err = errors.New("delivery tag out of step")
	}
	if err != nil {
		pc.mu.Lock()
		delete(pc.pending, tag)
		pc.mu.Unlock()
		return nil, fmt.Errorf("publish to %q: %w", queue, brokerError(err, nil))
	}
	return w, nil
}

// Publish sends m to queue and waits for the broker's confirm. A nack gives ErrNacked, a
// message no queue took gives ErrUnroutable, one over the broker's size limit ErrTooLarge, a
// cancelled ctx its error (the message may still arrive). ctx ends the wait for the confirm;
// the write itself cannot be interrupted, and a broker blocking publishers (a memory or disk
// alarm) stops reading it.
func (p *Publisher) Publish(ctx context.Context, queue string, m Message) error {
	p.mu.Lock()
	w, err := p.send(ctx, queue, m)
	p.mu.Unlock()
	if err != nil {
		return err
	}
	return wait(ctx, w)
}

func wait(ctx context.Context, w *confirmWait) error {
	select {
	case err := <-w.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("publish to %q: %w", w.queue, context.Cause(ctx))
	}
}

// PublishBatch sends every item, then waits for all the confirms, so the round trips overlap.
// It returns one error per item, nil for a confirmed message.
func (p *Publisher) PublishBatch(ctx context.Context, items []Outgoing) []error {
	errs := make([]error, len(items))
	waits := make([]*confirmWait, len(items))
	p.mu.Lock()
	for i, it := range items {
		waits[i], errs[i] = p.send(ctx, it.Queue, it.Msg)
	}
	p.mu.Unlock()
	for i, w := range waits {
		if w != nil {
			errs[i] = wait(ctx, w)
		}
	}
	return errs
}

// Close closes the channel; publishes still waiting for a confirm fail with ErrClosed. Safe to
// call more than once.
func (p *Publisher) Close() error {
	p.mu.Lock()
	var err error
	if !p.closed {
		p.closed = true
		if p.cur != nil {
			if cerr := p.cur.ch.Close(); cerr != nil && !errors.Is(cerr, amqp.ErrClosed) {
				err = fmt.Errorf("close publisher: %w", cerr)
			}
		}
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

// toTable copies headers into an AMQP table, converting nested maps.
func toTable(h map[string]any) (amqp.Table, error) {
	t := make(amqp.Table, len(h)+1)
	for k, v := range h {
		t[k] = toField(v)
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return t, nil
}

func toField(v any) any {
	switch v := v.(type) {
	case map[string]any:
		t := make(amqp.Table, len(v))
		for k, x := range v {
			t[k] = toField(x)
		}
		return t
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = toField(x)
		}
		return out
	}
	return v
}

// fromTable copies AMQP headers into plain maps, without the internal sequence header.
func fromTable(t amqp.Table) map[string]any {
	if len(t) == 0 {
		return nil
	}
	h := make(map[string]any, len(t))
	for k, v := range t {
		if k == seqHeader {
			continue
		}
		h[k] = fromField(v)
	}
	if len(h) == 0 {
		return nil
	}
	return h
}

func fromField(v any) any {
	switch v := v.(type) {
	case amqp.Table:
		m := make(map[string]any, len(v))
		for k, x := range v {
			m[k] = fromField(x)
		}
		return m
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = fromField(x)
		}
		return out
	}
	return v
}
