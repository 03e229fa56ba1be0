package runner

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pero-worker/pero-worker/internal/message"
	"github.com/pero-worker/pero-worker/internal/testenv"
	"github.com/pero-worker/pero-worker/internal/zookeeper"
)

// TestBenchPipeline measures messages per second through one noop stage at batch sizes 1, 8
// and 32, beside a minimal publish-consume-ack loop written directly with amqp091 that does the
// same broker work per message: consume with the same prefetch, publish to the next queue
// (persistent, publisher confirms), ack after the confirms. `make bench-pipeline` runs it.
func TestBenchPipeline(t *testing.T) {
	if os.Getenv("PERO_BENCH_PIPELINE") == "" {
		t.Skip("set PERO_BENCH_PIPELINE=1 (make bench-pipeline)")
	}
	n := 5000
	if v, err := strconv.Atoi(os.Getenv("PERO_BENCH_MESSAGES")); err == nil && v > 0 {
		n = v
	}
	image := make([]byte, 1024)
	type row struct {
		batch       int
		runner, raw float64 // messages per second
	}
	var rows []row
	// Two rounds in swapped order, best of each: the machine is shared and the broker warms up.
	for _, b := range []int{1, 8, 32} {
		raw1 := benchRaw(t, n, b, image)
		run1 := benchRunner(t, n, b, image)
		run2 := benchRunner(t, n, b, image)
		raw2 := benchRaw(t, n, b, image)
		rows = append(rows, row{b, max(run1, run2), max(raw1, raw2)})
	}
	fmt.Printf("\npipeline benchmark: %d messages of %d bytes through one noop stage, best of 2 runs each\n\n",
		n, len(image))
	fmt.Printf("| batch | runner msg/s | raw amqp091 msg/s | runner/raw | runner overhead per msg |\n")
	fmt.Printf("|------:|-------------:|------------------:|-----------:|------------------------:|\n")
	for _, r := range rows {
		overhead := time.Duration((1/r.runner - 1/r.raw) * float64(time.Second))
		fmt.Printf("| %5d | %12.0f | %17.0f | %9.0f%% | %23s |\n", r.batch, r.runner, r.raw, 100*r.runner/r.raw,
			overhead.Round(time.Microsecond))
	}
	fmt.Println()
}

func benchBodies(t *testing.T, e *env, n int, image []byte) [][]byte {
	bodies := make([][]byte, n)
	for i := range bodies {
		req, err := message.NewRequest(fmt.Sprintf("p%06d.jpg", i), image, []string{e.stage, e.out}, 0, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if bodies[i], err = message.Encode(req); err != nil {
			t.Fatal(err)
		}
	}
	return bodies
}

// preload fills the stage queue in chunks.
func preload(t *testing.T, e *env, bodies [][]byte) {
	for i := 0; i < len(bodies); i += 500 {
		e.publish(e.stage, bodies[i:min(i+500, len(bodies))]...)
	}
}

func benchRunner(t *testing.T, n, batch int, image []byte) float64 {
	e := newEnv(t, zookeeper.Settings{Function: "noop", BatchSize: batch, IdleTimeout: zookeeper.Duration(time.Minute)}, "")
	preload(t, e, benchBodies(t, e, n, image))
	r := e.runner(nil, "PERO_STATS_INTERVAL=5s", "LOG_LEVEL=error")
	if err := r.Start(testCtx(t, time.Minute)); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	for r.cnt.messages.Load() < int64(n) {
		if time.Since(t0) > 5*time.Minute {
			t.Fatalf("runner: %d of %d after 5 minutes", r.cnt.messages.Load(), n)
		}
		time.Sleep(200 * time.Microsecond)
	}
	el := time.Since(t0)
	r.Stop()
	if got := e.ready(e.out); got != n {
		t.Fatalf("runner: %d messages in out, want %d", got, n)
	}
	return float64(n) / el.Seconds()
}

// benchRaw is the reference: the same hop with nothing but amqp091.
func benchRaw(t *testing.T, n, batch int, image []byte) float64 {
	e := newEnv(t, zookeeper.Settings{Function: "noop"}, "")
	preload(t, e, benchBodies(t, e, n, image))
	conn, err := amqp.Dial(testenv.AMQPURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	in, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Qos(batch, 0, false); err != nil {
		t.Fatal(err)
	}
	out, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := out.Confirm(false); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	deliveries, err := in.Consume(e.stage, "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	done := 0
	for done < n {
		// Gather up to a batch: what has arrived, then a short wait, as the runner does.
		msgs := []amqp.Delivery{<-deliveries}
		wait := time.NewTimer(20 * time.Millisecond)
	fill:
		for len(msgs) < batch {
			select {
			case d := <-deliveries:
				msgs = append(msgs, d)
			case <-wait.C:
				break fill
			}
		}
		wait.Stop()
		confirms := make([]*amqp.DeferredConfirmation, len(msgs))
		for i, d := range msgs {
			confirms[i], err = out.PublishWithDeferredConfirmWithContext(ctx, "", e.out, true, false, amqp.Publishing{
				DeliveryMode: amqp.Persistent, Priority: d.Priority, Body: d.Body,
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		for i, c := range confirms {
			if ok, err := c.WaitContext(ctx); !ok || err != nil {
				t.Fatalf("confirm: %v %v", ok, err)
			}
			if err := msgs[i].Ack(false); err != nil {
				t.Fatal(err)
			}
		}
		done += len(msgs)
	}
	el := time.Since(t0)
	_ = in.Close()
	_ = out.Close()
	if got := e.ready(e.out); got != n {
		t.Fatalf("raw: %d messages in out, want %d", got, n)
	}
	return float64(n) / el.Seconds()
}
