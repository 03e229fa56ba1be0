package watchdog_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/pero-worker/pero-worker/internal/testenv"
	"github.com/pero-worker/pero-worker/internal/zookeeper"
	"github.com/pero-worker/pero-worker/runner"
	"github.com/pero-worker/pero-worker/watchdog"
)

// TestBenchScale measures, in one run, how fast the watchdog turns a message published to an idle
// stage into a result, against a bare `docker run` of the same image:
//
//   - publish -> container started: the watchdog's reaction (poll, decide, create, start);
//   - publish -> runner consuming: plus the runner's start (its status node says running);
//   - publish -> first result: plus the message's trip through the noop function;
//   - cold start: container created -> first result, for the watchdog's container and for a bare
//     `docker run` of the same image with the same environment, started by hand.
//
// It runs only with PERO_BENCH_SCALE=1 (make bench-scale); PERO_BENCH_ROUNDS sets the rounds
// (default 5). The table goes to stdout.
func TestBenchScale(t *testing.T) {
	if os.Getenv("PERO_BENCH_SCALE") != "1" {
		t.Skip("set PERO_BENCH_SCALE=1 (make bench-scale) to run the scale benchmark")
	}
	rounds := 5
	if v := os.Getenv("PERO_BENCH_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("PERO_BENCH_ROUNDS=%q: want a positive integer", v)
		}
		rounds = n
	}
	w := newWorld(t)
	out := w.output()
	stage := testenv.Unique("bench")
	w.stage(zookeeper.Stage{Name: stage, Settings: zookeeper.Settings{
		Function: "noop", Image: w.image, MaxContainers: 1, BatchSize: 1,
		IdleTimeout: zookeeper.Duration(time.Second),
	}})
	// The bare runs serve a stage of their own whose image the watchdog may not launch, so that
	// the watchdog keeps out of them.
	bare := testenv.Unique("bare")
	w.stage(zookeeper.Stage{Name: bare, Settings: zookeeper.Settings{
		Function: "noop", Image: "not-allowed/by-the-watchdog:0", MaxContainers: 1, BatchSize: 1,
		IdleTimeout: zookeeper.Duration(time.Second),
	}})
	b := w.dockerBackend()
	wd := w.watchdog("wd-bench", b, func(c *watchdog.Config) { c.Logger = quiet() })
	testenv.Eventually(t, 10*time.Second, "watchdog leads", wd.Leader)

	results, err := w.mq.Consume(ctxFor(t, time.Hour), out, 100)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = results.Close() })
	firstResult := func(deadline time.Duration) time.Time {
		t.Helper()
		select {
		case d, ok := <-results.Deliveries():
			if !ok {
				t.Fatalf("result consumer closed: %v", results.Err())
			}
			at := time.Now()
			_ = d.Ack()
			return at
		case <-time.After(deadline):
			t.Fatalf("no result within %s", deadline)
		}
		return time.Time{}
	}

	var started, consuming, result, coldWatchdog, coldBare []time.Duration
	for round := range rounds {
		// Idle: no container of the stage left.
		testenv.Eventually(t, 60*time.Second, "the stage is idle", func() bool {
			list, err := b.List(ctxFor(t, 10*time.Second))
			return err == nil && len(list) == 0
		})

		// Publish at a random point of the poll cycle, as a user would.
		time.Sleep(rand.N(watchdog.DefaultPollInterval))
		published := time.Now()
		w.publish(stage, out, 1)
		var up, running time.Time
		var created time.Time
		for up.IsZero() || running.IsZero() {
			if time.Since(published) > 60*time.Second {
				t.Fatalf("round %d: no running runner within 60s", round)
			}
			if up.IsZero() {
				if list, err := b.List(ctxFor(t, 5*time.Second)); err == nil {
					for _, c := range list {
						if c.State == watchdog.Up {
							up, created = time.Now(), c.Created
						}
					}
				}
			}
			if running.IsZero() && w.runnerState(stage, runner.StateRunning) {
				running = time.Now()
			}
			time.Sleep(10 * time.Millisecond)
		}
		done := firstResult(60 * time.Second)
		started = append(started, up.Sub(published))
		consuming = append(consuming, running.Sub(published))
		result = append(result, done.Sub(published))
		coldWatchdog = append(coldWatchdog, done.Sub(created))

		// The same image by hand, in the same conditions: the message waits in the queue.
		w.publish(bare, out, 1)
		name := testenv.Unique("pero-bare")
		t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", name).Run() })
		args := []string{"run", "--rm", "-d", "--name", name, "--network", "host", "--cap-drop", "ALL",
			"--security-opt", "no-new-privileges"}
		for _, kv := range append(w.runnerEnv(), "PERO_STAGE="+bare, "PERO_CONTAINER_ID="+name) {
			args = append(args, "-e", kv)
		}
		args = append(args, w.image)
		start := time.Now()
		if out, err := exec.Command("docker", args...).CombinedOutput(); err != nil {
			t.Fatalf("docker run: %v\n%s", err, out)
		}
		done = firstResult(60 * time.Second)
		coldBare = append(coldBare, done.Sub(start))
		testenv.Eventually(t, 60*time.Second, "the bare container exits", func() bool {
			return exec.Command("docker", "inspect", name).Run() != nil
		})
	}

	poll := watchdog.DefaultPollInterval
	ratio := make([]time.Duration, len(coldWatchdog))
	for i := range coldWatchdog {
		ratio[i] = time.Duration(float64(time.Second) * coldWatchdog[i].Seconds() / coldBare[i].Seconds())
	}
	startLimit := poll + median(coldBare)
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "\nwatchdog scale benchmark: %d rounds, poll interval %s, image %s (noop function, no model)\n\n",
		rounds, poll, w.image)
	fmt.Fprintln(tw, "measure\tmin\tmedian\tmax\ttarget\tmet")
	row := func(name string, ds []time.Duration, target string, met bool) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", name, ms(slices.Min(ds)), ms(median(ds)), ms(slices.Max(ds)),
			target, yes(met))
	}
	row("publish -> container started", started, "", true)
	row("publish -> runner consuming", consuming, "", true)
	row("publish -> first result (reaction)", result, "<= poll + bare cold start = "+ms(startLimit),
		median(result) <= startLimit)
	row("cold start, watchdog: created -> first result", coldWatchdog, "", true)
	row("cold start, bare docker run -> first result", coldBare, "", true)
	fmt.Fprintf(tw, "cold start ratio watchdog / bare\t%.2f\t%.2f\t%.2f\t<= 1.5\t%s\n",
		slices.Min(ratio).Seconds(), median(ratio).Seconds(), slices.Max(ratio).Seconds(), yes(median(ratio).Seconds() <= 1.5))
	_ = tw.Flush()
	fmt.Println()
}

// runnerState reports whether a runner of stage has the state in its status node.
func (w *world) runnerState(stage, state string) bool {
	rs, err := (&watchdog.ZKRunners{Conn: w.store.Conn(), Root: w.root}).Runners(context.Background(), stage)
	if err != nil {
		return false
	}
	return slices.ContainsFunc(rs, func(s runner.Status) bool { return s.State == state })
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 0, 64) + " ms"
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "NO"
}
