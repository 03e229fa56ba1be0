package rabbitmq

import (
	"errors"
	"testing"
	"time"

	"github.com/pero-worker/pero-worker/internal/testenv"
)

func publishN(t *testing.T, c *Conn, queue string, n int) {
	t.Helper()
	p, err := c.NewPublisher()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	items := make([]Outgoing, n)
	for i := range items {
		items[i] = Outgoing{queue, Message{Body: []byte{byte(i)}}}
	}
	for i, err := range p.PublishBatch(testCtx(t), items) {
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
}

func TestConsumerCloseRequeues(t *testing.T) {
	c := dialTest(t)
	stage := testStage(t, c)
	ctx := testCtx(t)
	publishN(t, c, stage, 2)

	cons, err := c.Consume(ctx, stage, 2)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if d := receive(t, cons); d.Redelivered {
			t.Fatal("first delivery marked redelivered")
		}
	}
	if err := cons.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := cons.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, ok := <-cons.Deliveries(); ok {
		t.Fatal("Deliveries open after Close")
	}
	if cons.Err() != nil {
		t.Errorf("Err after Close = %v, want nil", cons.Err())
	}

	again, err := c.Consume(ctx, stage, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	for range 2 {
		d := receive(t, again)
		if !d.Redelivered {
			t.Error("requeued delivery not marked redelivered")
		}
		if err := d.Ack(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestConsumerCancel(t *testing.T) {
	c := dialTest(t)
	stage := testStage(t, c)
	ctx := testCtx(t)
	publishN(t, c, stage, 5)

	cons, err := c.Consume(ctx, stage, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	d := receive(t, cons)
	// Let the second prefetched message reach the client before cancelling.
	testenv.Eventually(t, 10*time.Second, "two messages taken", func() bool {
		info, err := c.Inspect(ctx, stage)
		return err == nil && info.Ready == 3
	})
	if err := cons.Cancel(); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	if _, ok := <-cons.Deliveries(); ok {
		t.Fatal("a delivery arrived after Cancel")
	}
	if cons.Err() != nil {
		t.Errorf("Err after Cancel = %v, want nil", cons.Err())
	}
	// The delivery handed over stays ackable; the one prefetched but not handed over is back.
	if err := d.Ack(); err != nil {
		t.Fatalf("Ack after Cancel: %v", err)
	}
	info, err := c.Inspect(ctx, stage)
	if err != nil || info.Ready != 4 || info.Consumers != 0 {
		t.Fatalf("after Cancel: %+v, %v; want 4 ready, no consumer", info, err)
	}
	if err := cons.Cancel(); err != nil {
		t.Fatalf("second Cancel: %v", err)
	}
}

func TestConsumeMissingQueue(t *testing.T) {
	c := dialTest(t)
	_, err := c.Consume(testCtx(t), testenv.Unique("rmq-missing"), 1)
	if !errors.Is(err, ErrQueueNotFound) {
		t.Fatalf("Consume of a missing queue: %v, want ErrQueueNotFound", err)
	}
	if _, err := c.Consume(testCtx(t), "x", 0); err == nil {
		t.Fatal("prefetch 0 accepted")
	}
}

func TestConsumerQueueDeleted(t *testing.T) {
	c := dialTest(t)
	stage := testStage(t, c)
	cons, err := c.Consume(testCtx(t), stage, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	if err := c.DeleteQueue(testCtx(t), stage, false); err != nil {
		t.Fatal(err)
	}
	select {
	case _, ok := <-cons.Deliveries():
		if ok {
			t.Fatal("unexpected delivery")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Deliveries still open after the queue was deleted")
	}
	if !errors.Is(cons.Err(), ErrCancelled) {
		t.Fatalf("Err = %v, want ErrCancelled", cons.Err())
	}
}

func TestConsumerConnectionClosed(t *testing.T) {
	c, err := Dial(testCtx(t), Config{URLs: []string{testenv.AMQPURL(t)}})
	if err != nil {
		t.Fatal(err)
	}
	stage := testStage(t, dialTest(t))
	publishN(t, c, stage, 1)
	cons, err := c.Consume(testCtx(t), stage, 1)
	if err != nil {
		t.Fatal(err)
	}
	d := receive(t, cons)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-cons.Deliveries(); ok {
		t.Fatal("delivery after the connection closed")
	}
	if !errors.Is(cons.Err(), ErrClosed) {
		t.Errorf("Err = %v, want ErrClosed", cons.Err())
	}
	if err := d.Ack(); !errors.Is(err, ErrClosed) {
		t.Errorf("Ack on a closed connection: %v, want ErrClosed", err)
	}
	if err := cons.Close(); err != nil {
		t.Errorf("Close after the connection closed: %v", err)
	}
}
