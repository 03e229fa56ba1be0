package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/pero-worker/pero-worker/internal/testenv"
)

func TestPublishConsumeRoundTrip(t *testing.T) {
	c := dialTest(t)
	stage := testStage(t, c)
	ctx := testCtx(t)

	p, err := c.NewPublisher()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	msg := Message{
		Body:     []byte("page-1"),
		Priority: 1,
		Headers: map[string]any{
			"reason": "parse error",
			"count":  int32(3),
			"nested": map[string]any{"stage": "detect"},
		},
		MessageID:     "m-1",
		CorrelationID: "c-1",
	}
	if err := p.Publish(ctx, stage, msg); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	cons, err := c.Consume(ctx, stage, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	d := receive(t, cons)
	if string(d.Body) != "page-1" || d.Priority != 1 || d.MessageID != "m-1" || d.CorrelationID != "c-1" || d.Redelivered {
		t.Errorf("delivery = %+v", d)
	}
	if d.Headers["reason"] != "parse error" || d.Headers["count"] != int32(3) {
		t.Errorf("headers = %#v", d.Headers)
	}
	if n, ok := d.Headers["nested"].(map[string]any); !ok || n["stage"] != "detect" {
		t.Errorf("nested header = %#v", d.Headers["nested"])
	}
	if _, ok := d.Headers[seqHeader]; ok || len(d.Headers) != 3 {
		t.Errorf("headers carry extra fields: %#v", d.Headers)
	}
	if err := d.Ack(); err != nil {
		t.Fatalf("Ack: %v", err)
	}
	if err := d.Ack(); err == nil {
		t.Error("second Ack accepted")
	}
	// The refused double ack did not reach the broker: the channel still works.
	if err := p.Publish(ctx, stage, Message{Body: []byte("page-2")}); err != nil {
		t.Fatal(err)
	}
	if err := receive(t, cons).Ack(); err != nil {
		t.Fatalf("Ack after a refused double ack: %v", err)
	}
}

func TestPriorityOrder(t *testing.T) {
	c := dialTest(t)
	stage := testStage(t, c)
	ctx := testCtx(t)

	p, err := c.NewPublisher()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	items := []Outgoing{
		{stage, Message{Body: []byte("low-1")}},
		{stage, Message{Body: []byte("low-2")}},
		{stage, Message{Body: []byte("high"), Priority: 1}},
	}
	for i, err := range p.PublishBatch(ctx, items) {
		if err != nil {
			t.Fatalf("item %d: %v", i, err)
		}
	}
	cons, err := c.Consume(ctx, stage, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	var got []string
	for range 3 {
		d := receive(t, cons)
		got = append(got, string(d.Body))
		if err := d.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	if strings.Join(got, ",") != "high,low-1,low-2" {
		t.Errorf("order = %v, want the priority-1 message first", got)
	}
}

func TestPublishUnroutable(t *testing.T) {
	c := dialTest(t)
	stage := testStage(t, c)
	ctx := testCtx(t)

	p, err := c.NewPublisher()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	missing := testenv.Unique("rmq-missing")
	err = p.Publish(ctx, missing, Message{Body: []byte("x")})
	if !errors.Is(err, ErrUnroutable) || !strings.Contains(err.Error(), missing) {
		t.Fatalf("Publish to a missing queue: %v, want ErrUnroutable naming %s", err, missing)
	}
	if err := p.Publish(ctx, stage, Message{Body: []byte("x")}); err != nil {
		t.Fatalf("Publish after an unroutable one: %v", err)
	}

	// Returns are matched to their own messages in a pipelined batch.
	var items []Outgoing
	for i := range 20 {
		q := stage
		if i%3 == 1 {
			q = missing
		}
		items = append(items, Outgoing{q, Message{Body: []byte(fmt.Sprint(i))}})
	}
	routed := 0
	for i, err := range p.PublishBatch(ctx, items) {
		switch {
		case items[i].Queue == missing && !errors.Is(err, ErrUnroutable):
			t.Errorf("item %d to the missing queue: %v", i, err)
		case items[i].Queue == stage && err != nil:
			t.Errorf("item %d to the stage: %v", i, err)
		case items[i].Queue == stage:
			routed++
		}
	}
	if info, err := c.Inspect(ctx, stage); err != nil || info.Ready != routed+1 {
		t.Errorf("stage holds %+v (%v), want %d", info, err, routed+1)
	}
}

func TestPublishBatch500(t *testing.T) {
	c := dialTest(t)
	stage := testStage(t, c)
	ctx := testCtx(t)

	p, err := c.NewPublisher()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	items := make([]Outgoing, 500)
	for i := range items {
		items[i] = Outgoing{stage, Message{Body: fmt.Appendf(nil, "m-%d", i), Priority: uint8(i % 2)}}
	}
	errs := p.PublishBatch(ctx, items)
	if len(errs) != len(items) {
		t.Fatalf("%d errors for %d items", len(errs), len(items))
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("item %d: %v", i, err)
		}
	}
	if info, err := c.Inspect(ctx, stage); err != nil || info.Ready != 500 {
		t.Fatalf("Inspect = %+v, %v; want 500 ready", info, err)
	}
}

func TestPublishConcurrent(t *testing.T) {
	c := dialTest(t)
	stage := testStage(t, c)
	ctx := testCtx(t)

	p, err := c.NewPublisher()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 8*25)
	for w := range 8 {
		wg.Go(func() {
			for i := range 25 {
				if i%5 == 0 {
					errs <- p.PublishBatch(ctx, []Outgoing{{stage, Message{Body: []byte("b")}}})[0]
					continue
				}
				errs <- p.Publish(ctx, stage, Message{Body: fmt.Appendf(nil, "%d-%d", w, i)})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if info, err := c.Inspect(ctx, stage); err != nil || info.Ready != 200 {
		t.Fatalf("Inspect = %+v, %v; want 200 ready", info, err)
	}
}

func TestPublishAfterClose(t *testing.T) {
	c := dialTest(t)
	stage := testStage(t, c)
	p, err := c.NewPublisher()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := p.Publish(testCtx(t), stage, Message{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Publish after Close: %v, want ErrClosed", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p2, err := c.NewPublisher()
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	if err := p2.Publish(ctx, stage, Message{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Publish with a cancelled ctx: %v", err)
	}
	if err := p2.Publish(testCtx(t), stage, Message{Headers: map[string]any{"bad": struct{}{}}}); err == nil {
		t.Fatal("Publish accepted a header AMQP cannot carry")
	}
	if err := p2.Publish(testCtx(t), stage, Message{Body: []byte("ok")}); err != nil {
		t.Fatalf("Publish after a refused header: %v", err)
	}
}

// A publisher whose channel closed under it opens a new one on the next publish.
func TestPublisherReopensChannel(t *testing.T) {
	c := dialTest(t)
	stage := testStage(t, c)
	ctx := testCtx(t)
	p, err := c.NewPublisher()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.mu.Lock()
	old := p.cur.ch
	p.mu.Unlock()
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(ctx, stage, Message{Body: []byte("x")}); err != nil {
		t.Fatalf("Publish after the channel closed: %v", err)
	}
}
