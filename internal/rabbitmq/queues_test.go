package rabbitmq

import (
	"errors"
	"net/url"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pero-worker/pero-worker/internal/testenv"
)

type apiQueueInfo struct {
	Durable    bool           `json:"durable"`
	AutoDelete bool           `json:"auto_delete"`
	Type       string         `json:"type"`
	Arguments  map[string]any `json:"arguments"`
}

func TestDeclareStage(t *testing.T) {
	c := dialTest(t)
	stage := testStage(t, c)
	ctx := testCtx(t)

	for _, q := range []string{stage, DeadLetterQueue(stage)} {
		var info apiQueueInfo
		path := "/api/queues/" + url.PathEscape(testVHost(t)) + "/" + url.PathEscape(q)
		if code := mgmtCall(t, "GET", path, &info); code != 200 {
			t.Fatalf("GET %s: %d", path, code)
		}
		if !info.Durable || info.AutoDelete || info.Type != "classic" {
			t.Errorf("%s: durable=%v auto_delete=%v type=%q, want a durable classic queue", q, info.Durable, info.AutoDelete, info.Type)
		}
		if len(info.Arguments) != 1 || info.Arguments["x-max-priority"] != float64(1) {
			t.Errorf("%s: arguments %v, want exactly x-max-priority 1", q, info.Arguments)
		}
	}

	// Idempotent.
	if err := c.DeclareStage(ctx, stage); err != nil {
		t.Fatalf("second DeclareStage: %v", err)
	}

	// What the original clients do still works on the queue we declared.
	raw, err := amqp.Dial(testenv.AMQPURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	ch, err := raw.Channel()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []any{1, int32(1), int64(1), int16(1)} {
		if _, err := ch.QueueDeclare(stage, true, false, false, false, amqp.Table{"x-max-priority": v}); err != nil {
			t.Fatalf("raw declare with x-max-priority %T(1): %v", v, err)
		}
	}
}

func TestDeclareStageMismatch(t *testing.T) {
	c := dialTest(t)
	stage := testenv.Unique("rmq-test")
	t.Cleanup(func() { deleteQueues(t, stage, DeadLetterQueue(stage)) })

	raw, err := amqp.Dial(testenv.AMQPURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	ch, err := raw.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(stage, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	err = c.DeclareStage(testCtx(t), stage)
	if !errors.Is(err, ErrQueueMismatch) {
		t.Fatalf("DeclareStage over a queue without priority: %v, want ErrQueueMismatch", err)
	}
	// Only the throwaway channel closed.
	if _, err := c.Inspect(testCtx(t), stage); err != nil {
		t.Fatalf("Inspect after the mismatch: %v", err)
	}
}

func TestInspect(t *testing.T) {
	c := dialTest(t)
	stage := testStage(t, c)
	ctx := testCtx(t)

	info, err := c.Inspect(ctx, stage)
	if err != nil {
		t.Fatal(err)
	}
	if info != (QueueInfo{Name: stage}) {
		t.Errorf("empty queue: %+v", info)
	}

	p, err := c.NewPublisher()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for range 3 {
		if err := p.Publish(ctx, stage, Message{Body: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	if info, err = c.Inspect(ctx, stage); err != nil || info.Ready != 3 || info.Consumers != 0 {
		t.Fatalf("after 3 publishes: %+v, %v", info, err)
	}

	cons, err := c.Consume(ctx, stage, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	d := receive(t, cons)
	// With prefetch 1 the broker holds back the other two.
	if info, err = c.Inspect(ctx, stage); err != nil || info.Ready != 2 || info.Consumers != 1 {
		t.Fatalf("with one consumer holding one: %+v, %v", info, err)
	}
	if err := d.Ack(); err != nil {
		t.Fatal(err)
	}
}

func TestInspectMissing(t *testing.T) {
	c := dialTest(t)
	stage := testStage(t, c)
	ctx := testCtx(t)

	_, err := c.Inspect(ctx, testenv.Unique("rmq-missing"))
	if !errors.Is(err, ErrQueueNotFound) {
		t.Fatalf("Inspect of a missing queue: %v, want ErrQueueNotFound", err)
	}
	if c.IsClosed() {
		t.Fatal("the 404 closed the connection")
	}
	if _, err := c.Inspect(ctx, stage); err != nil {
		t.Fatalf("Inspect after the 404: %v", err)
	}
	p, err := c.NewPublisher()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Publish(ctx, stage, Message{Body: []byte("x")}); err != nil {
		t.Fatalf("Publish after the 404: %v", err)
	}
}

func TestPurgeAndDelete(t *testing.T) {
	c := dialTest(t)
	stage := testStage(t, c)
	ctx := testCtx(t)

	p, err := c.NewPublisher()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for range 2 {
		if err := p.Publish(ctx, stage, Message{Body: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.DeleteQueue(ctx, stage, true); !errors.Is(err, ErrQueueNotEmpty) {
		t.Fatalf("DeleteQueue(ifEmpty) of a queue with messages: %v, want ErrQueueNotEmpty", err)
	}
	if n, err := c.Purge(ctx, stage); err != nil || n != 2 {
		t.Fatalf("Purge = %d, %v; want 2", n, err)
	}
	if err := c.DeleteQueue(ctx, stage, true); err != nil {
		t.Fatalf("DeleteQueue(ifEmpty) of an empty queue: %v", err)
	}
	if _, err := c.Inspect(ctx, stage); !errors.Is(err, ErrQueueNotFound) {
		t.Fatalf("Inspect after delete: %v", err)
	}
	if err := c.DeleteQueue(ctx, stage, false); err != nil {
		t.Fatalf("DeleteQueue of a missing queue: %v", err)
	}
	if _, err := c.Purge(ctx, stage); !errors.Is(err, ErrQueueNotFound) {
		t.Fatalf("Purge of a missing queue: %v", err)
	}
}
