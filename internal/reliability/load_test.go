package reliability

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pero-worker/pero-worker/internal/message"
	"github.com/pero-worker/pero-worker/internal/rabbitmq"
	"github.com/pero-worker/pero-worker/internal/testenv"
	"github.com/pero-worker/pero-worker/internal/zookeeper"
	"github.com/pero-worker/pero-worker/watchdog"
)

// TestBenchLoad sends PERO_BENCH_LOAD_PAGES (10,000) small pages through a noop stage and a
// sleep stage (2 ms a page) with a watchdog scaling both, and reports throughput, latency
// percentiles (submit to output) and the peak resident memory of the watchdog and the runners.
// It checks that nothing is lost or duplicated and that no stage ever runs more containers than
// its maximum. `make bench-load` runs it; it is not part of `make test`.
func TestBenchLoad(t *testing.T) {
	if os.Getenv("PERO_BENCH_LOAD") == "" {
		t.Skip("set PERO_BENCH_LOAD=1 (make bench-load)")
	}
	n := 10000
	if v, err := strconv.Atoi(os.Getenv("PERO_BENCH_LOAD_PAGES")); err == nil && v > 0 {
		n = v
	}
	const batch, most = 32, 3
	s := newSystem(t)
	out := s.output()
	first := testenv.Unique("noop")
	second := testenv.Unique("sleep")
	for _, st := range []zookeeper.Stage{
		{Name: first, Settings: zookeeper.Settings{Function: "noop", Image: s.image, BatchSize: batch, MaxContainers: most,
			IdleTimeout: zookeeper.Duration(3 * time.Second)}},
		{Name: second, Config: "[sleep]\nseconds = 0.002\n", Settings: zookeeper.Settings{Function: "sleep", Image: s.image,
			BatchSize: batch, MaxContainers: most, IdleTimeout: zookeeper.Duration(3 * time.Second)}},
	} {
		s.stage(st)
	}
	wd := s.watchdog("wd-load", "PERO_TARGET_DRAIN=10s")
	s.leads("wd-load", 30*time.Second)

	// Arrivals at the output, recorded as they come.
	cons, err := s.conn().Consume(ctxFor(t, 10*time.Second), out, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	arrived := map[string]int{}
	var latencies []time.Duration
	var last time.Time
	done := make(chan struct{})
	go func() {
		defer close(done)
		for d := range cons.Deliveries() {
			now := time.Now()
			req, err := message.Decode(d.Body)
			_ = d.Ack()
			if err != nil {
				continue
			}
			mu.Lock()
			arrived[req.GetUuid()]++
			latencies = append(latencies, now.Sub(req.GetStartTime().AsTime()))
			last = now
			mu.Unlock()
		}
	}()
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(latencies)
	}

	mem := startMemorySampler(t, s, wd)
	start := time.Now()
	ids := s.publish(n, first, second, out)
	published := time.Since(start)
	testenv.Eventually(t, 30*time.Minute, fmt.Sprintf("%d pages in the output", n), func() bool { return count() >= n })
	testenv.Eventually(t, 2*time.Minute, "every container gone", func() bool { return s.alive() == 0 })
	_ = cons.Close()
	<-done
	mem.halt()

	mu.Lock()
	defer mu.Unlock()
	lost, dups := 0, 0
	for _, id := range ids {
		switch c := arrived[id]; {
		case c == 0:
			lost++
		case c > 1:
			dups += c - 1
		}
	}
	if lost > 0 || dups > 0 {
		t.Errorf("%d pages lost, %d duplicates", lost, dups)
	}
	for _, st := range []string{first, second} {
		if d := s.ready(rabbitmq.DeadLetterQueue(st)); d > 0 {
			t.Errorf("%d dead letters in %s", d, st)
		}
		s.atMost(st, most)
	}
	took := last.Sub(start)
	slices.Sort(latencies)
	pct := func(p float64) time.Duration {
		return latencies[min(len(latencies)-1, int(p*float64(len(latencies))))].Round(time.Millisecond)
	}
	fmt.Printf("\nload benchmark: %d pages of 3 bytes through %s (noop) and %s (sleep 2ms/page), batch %d, at most %d containers each\n\n",
		n, first, second, batch, most)
	fmt.Printf("| pages | published in | all out after | pages/s | latency p50 | p90 | p99 | max |\n")
	fmt.Printf("|------:|-------------:|--------------:|--------:|------------:|----:|----:|----:|\n")
	fmt.Printf("| %d | %s | %s | %.0f | %s | %s | %s | %s |\n\n", n, published.Round(time.Millisecond),
		took.Round(time.Millisecond), float64(n)/took.Seconds(), pct(0.5), pct(0.9), pct(0.99), latencies[len(latencies)-1].Round(time.Millisecond))
	fmt.Printf("| stage | containers launched | most at once | max |\n|---|---:|---:|---:|\n")
	for _, st := range []string{first, second} {
		fmt.Printf("| %s | %d | %d | %d |\n", st, s.launched(st), s.mostAlive(st), most)
	}
	fmt.Println()
	fmt.Print(mem.report())
}

// memorySampler reads, every 500 ms, the resident memory of the watchdog process and of every
// runner of the system's containers (their processes are the host's, seen through /proc).
type memorySampler struct {
	mu           sync.Mutex
	watchdog     []int64 // watchdog VmRSS samples, KiB
	watchdogPeak int64   // watchdog VmHWM, KiB
	runnerPeak   int64   // the highest VmHWM of any runner, KiB
	runnerPeaks  map[string]int64
	stop, done   chan struct{}
}

func startMemorySampler(t *testing.T, s *system, wd *process) *memorySampler {
	m := &memorySampler{runnerPeaks: map[string]int64{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			rss, hwm := procMemory(wd.cmd.Process.Pid)
			m.mu.Lock()
			if rss > 0 {
				m.watchdog = append(m.watchdog, rss)
				m.watchdogPeak = max(m.watchdogPeak, hwm)
			}
			m.mu.Unlock()
			for _, c := range s.containers() {
				if c.State != watchdog.Up {
					continue
				}
				pid := containerPid(c.ID)
				if pid <= 0 {
					continue
				}
				_, hwm := procMemory(pid)
				m.mu.Lock()
				m.runnerPeaks[c.Name] = max(m.runnerPeaks[c.Name], hwm)
				m.runnerPeak = max(m.runnerPeak, hwm)
				m.mu.Unlock()
			}
			select {
			case <-m.stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(m.halt)
	return m
}

func (m *memorySampler) halt() {
	select {
	case <-m.stop:
	default:
		close(m.stop)
	}
	<-m.done
}

// report prints the peaks and whether the watchdog's memory stayed flat: the mean of the last
// third of its samples beside the first third's.
func (m *memorySampler) report() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	mean := func(xs []int64) float64 {
		if len(xs) == 0 {
			return 0
		}
		var sum int64
		for _, x := range xs {
			sum += x
		}
		return float64(sum) / float64(len(xs)) / 1024
	}
	third := len(m.watchdog) / 3
	return fmt.Sprintf("| process | peak RSS MiB | first third MiB | last third MiB |\n|---|---:|---:|---:|\n"+
		"| pero-watchdog | %.1f | %.1f | %.1f |\n| pero-runner (highest of %d) | %.1f | | |\n\n",
		float64(m.watchdogPeak)/1024, mean(m.watchdog[:third]), mean(m.watchdog[len(m.watchdog)-third:]),
		len(m.runnerPeaks), float64(m.runnerPeak)/1024)
}

// procMemory returns a process's VmRSS and VmHWM (peak) in KiB; zeros when it is gone.
func procMemory(pid int) (rss, hwm int64) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			rss = n
		case "VmHWM":
			hwm = n
		}
	}
	return rss, hwm
}

// containerPid is the host pid of a container's main process (the runner); 0 when not running.
func containerPid(id string) int {
	out, err := exec.Command("docker", "inspect", "--format", "{{.State.Pid}}", id).Output()
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return pid
}
