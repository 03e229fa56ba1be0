package watchdog_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pero-worker/pero-worker/cli"
	"github.com/pero-worker/pero-worker/internal/message"
	"github.com/pero-worker/pero-worker/internal/rabbitmq"
	"github.com/pero-worker/pero-worker/internal/testenv"
	"github.com/pero-worker/pero-worker/internal/zookeeper"
	"github.com/pero-worker/pero-worker/watchdog"
	"github.com/pero-worker/pero-worker/watchdog/docker"
	"github.com/pero-worker/pero-worker/watchdog/internal/testimage"
	"github.com/pero-worker/pero-worker/watchdog/internal/testswarm"
	"github.com/pero-worker/pero-worker/watchdog/status"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testswarm.Leave()
	testimage.Cleanup()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	if code == 0 {
		if err := goleak.Find(goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
			goleak.IgnoreTopFunction("internal/poll.runtime_pollWait")); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// world is one end-to-end test's setting: a ZooKeeper root of its own with the broker
// registered, the function image, a container scope and a model cache volume of its own; all of
// it (queues, containers, services, volume, znodes) is removed when the test ends.
type world struct {
	t       *testing.T
	top     string
	root    string
	zkAddr  string
	store   *zookeeper.Store
	mq      *rabbitmq.Conn
	amqpURL string
	mqUser  string
	mqPass  string
	vhost   string
	scope   string
	volume  string
	image   string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	testenv.Docker(t)
	w := &world{t: t, zkAddr: testenv.ZooKeeper(t), amqpURL: testenv.AMQPURL(t)}
	mgmt := testenv.ManagementURL(t)
	u, err := url.Parse(w.amqpURL)
	if err != nil {
		t.Fatal(err)
	}
	w.mqUser = u.User.Username()
	w.mqPass, _ = u.User.Password()
	w.vhost = strings.TrimPrefix(u.Path, "/")
	w.top = "/" + testenv.Unique("wt")
	w.root = w.top + "/pero"
	w.scope = testenv.Unique("wd")
	w.volume = testenv.Unique("pero-test-cache")
	w.image = testimage.Function(t)
	ctx := ctxFor(t, 30*time.Second)

	w.store, err = zookeeper.Dial(ctx, zookeeper.Config{Servers: []string{w.zkAddr}, Root: w.root, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		testenv.DeleteTree(w.store.Conn(), w.top)
		w.store.Close()
	})
	w.mq, err = rabbitmq.Dial(ctx, rabbitmq.Config{URLs: []string{w.amqpURL}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.mq.Close() })
	if err := w.store.AddServer(ctx, zookeeper.MQServers, u.Host); err != nil {
		t.Fatal(err)
	}
	if err := w.store.AddServer(ctx, zookeeper.MQMonitoringServers, strings.TrimPrefix(mgmt, "http://")); err != nil {
		t.Fatal(err)
	}
	// Registered last, so it runs first: no container of the scope survives the test.
	t.Cleanup(func() {
		removeScope(w.scope)
		_ = exec.Command("docker", "volume", "rm", "-f", w.volume).Run()
	})
	return w
}

// removeScope removes every container and service labelled with the scope.
func removeScope(scope string) {
	filter := "label=" + watchdog.LabelScope + "=" + scope
	if out, _ := exec.Command("docker", "ps", "-aq", "--filter", filter).Output(); len(strings.TrimSpace(string(out))) > 0 {
		_ = exec.Command("docker", append([]string{"rm", "-f", "-v"}, strings.Fields(string(out))...)...).Run()
	}
	if out, _ := exec.Command("docker", "service", "ls", "-q", "--filter", filter).Output(); len(strings.TrimSpace(string(out))) > 0 {
		_ = exec.Command("docker", append([]string{"service", "rm"}, strings.Fields(string(out))...)...).Run()
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testLogger logs to the test output at info level (debug with PERO_TEST_LOG=debug).
func testLogger(t *testing.T) *slog.Logger {
	level := slog.LevelInfo
	if strings.EqualFold(os.Getenv("PERO_TEST_LOG"), "debug") {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: level}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// stage creates a stage and declares its queue (and dead-letter queue), removed after the test.
func (w *world) stage(st zookeeper.Stage) {
	w.t.Helper()
	ctx := ctxFor(w.t, 30*time.Second)
	if err := w.store.CreateStage(ctx, st); err != nil {
		w.t.Fatal(err)
	}
	if err := w.mq.DeclareStage(ctx, st.Name); err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		for _, q := range []string{st.Name, rabbitmq.DeadLetterQueue(st.Name)} {
			_ = w.mq.DeleteQueue(ctx, q, false)
		}
	})
}

// output creates an output stage (no containers) with a unique name and returns it.
func (w *world) output() string {
	name := testenv.Unique("out")
	w.stage(zookeeper.Stage{Name: name, Settings: zookeeper.Settings{Output: true}})
	return name
}

// publish sends n requests routed stage -> out.
func (w *world) publish(stage, out string, n int) {
	w.t.Helper()
	ctx := ctxFor(w.t, 60*time.Second)
	pub, err := w.mq.NewPublisher()
	if err != nil {
		w.t.Fatal(err)
	}
	defer pub.Close()
	items := make([]rabbitmq.Outgoing, n)
	for i := range items {
		req, err := message.NewRequest(fmt.Sprintf("page-%03d.png", i), []byte("img"), []string{stage, out}, 0, time.Now())
		if err != nil {
			w.t.Fatal(err)
		}
		body, err := message.Encode(req)
		if err != nil {
			w.t.Fatal(err)
		}
		items[i] = rabbitmq.Outgoing{Queue: stage, Msg: rabbitmq.Message{Body: body}}
	}
	for i, err := range pub.PublishBatch(ctx, items) {
		if err != nil {
			w.t.Fatalf("publish %d: %v", i, err)
		}
	}
}

func (w *world) ready(queue string) int {
	w.t.Helper()
	info, err := w.mq.Inspect(ctxFor(w.t, 10*time.Second), queue)
	if err != nil {
		w.t.Fatal(err)
	}
	return info.Ready
}

// runnerEnv is what the containers get: the services of this world.
func (w *world) runnerEnv() []string {
	return []string{
		"PERO_ZOOKEEPER=" + w.zkAddr,
		"PERO_ZK_ROOT=" + w.root,
		"PERO_MQ_USER=" + w.mqUser,
		"PERO_MQ_PASSWORD=" + w.mqPass,
		"PERO_MQ_VHOST=" + w.vhost,
		"PERO_CONNECT_TIMEOUT=20s",
		"PERO_STATS_INTERVAL=500ms",
		"PERO_BATCH_WAIT=20ms",
		"LOG_FORMAT=text",
	}
}

func (w *world) dockerBackend() *docker.Backend {
	b, err := docker.New(docker.Config{Scope: w.scope, Logger: testLogger(w.t)})
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { b.Close() })
	return b
}

// watchdog starts an in-process watchdog with an elector on a session of its own.
func (w *world) watchdog(id string, b watchdog.Backend, mod func(*watchdog.Config)) *watchdog.Watchdog {
	w.t.Helper()
	ctx := ctxFor(w.t, 30*time.Second)
	st, err := zookeeper.Dial(ctx, zookeeper.Config{Servers: []string{w.zkAddr}, Root: w.root,
		SessionTimeout: 4 * time.Second, Logger: quiet()})
	if err != nil {
		w.t.Fatal(err)
	}
	session, err := rabbitmq.DialWithRecovery(ctx, rabbitmq.Config{URLs: []string{w.amqpURL}})
	if err != nil {
		w.t.Fatal(err)
	}
	mons, err := st.Servers(ctx, zookeeper.MQMonitoringServers)
	if err != nil {
		w.t.Fatal(err)
	}
	log := testLogger(w.t).With("watchdog", id)
	el, err := watchdog.NewElector(watchdog.ElectorConfig{Conn: st.Conn(), ACL: st.ACL(), Root: w.root, ID: id,
		SessionEvents: st.SessionEvents(), Logger: log})
	if err != nil {
		w.t.Fatal(err)
	}
	cfg := watchdog.Config{
		ID:            id,
		AllowedImages: []string{w.image},
		Runner: watchdog.RunnerConfig{
			Env: w.runnerEnv(), Network: "host", CacheVolume: w.volume, PidsLimit: 256,
			StopTimeout: 10 * time.Second,
		},
		Logger: log,
	}
	if mod != nil {
		mod(&cfg)
	}
	wd, err := watchdog.New(cfg, watchdog.Deps{
		Backend: b,
		Stages:  st,
		Queues: &watchdog.BrokerQueues{Session: session,
			Management: rabbitmq.NewManagement("http://"+mons[0], w.mqUser, w.mqPass, w.vhost, nil)},
		Runners: &watchdog.ZKRunners{Conn: st.Conn(), Root: w.root},
		Status:  &watchdog.ZKStatus{Conn: st.Conn(), ACL: st.ACL(), Path: status.Path(w.root)},
		Elector: el,
	})
	if err != nil {
		w.t.Fatal(err)
	}
	if err := wd.Start(context.Background()); err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() {
		wd.Stop()
		_ = session.Close()
		st.Close()
	})
	return wd
}

// status reads what the leading watchdog publishes.
func (w *world) status() (status.Status, error) {
	return status.Read(ctxFor(w.t, 5*time.Second), w.store.Conn(), w.root)
}

// sampler lists the scope's containers continuously and keeps what the tests check: the most
// alive at once per stage and in total, and when each container was first seen.
type sampler struct {
	b     watchdog.Backend
	mu    sync.Mutex
	max   map[string]int
	total int // most alive at once, all stages
	alive map[string]int
	first map[string]time.Time // container ID -> first seen
	seen  map[string]watchdog.Container
	order []string // container IDs in the order first seen
	stop  chan struct{}
	done  chan struct{}
	errs  int
}

func startSampler(t *testing.T, b watchdog.Backend) *sampler {
	s := &sampler{b: b, max: map[string]int{}, alive: map[string]int{}, first: map[string]time.Time{},
		seen: map[string]watchdog.Container{}, stop: make(chan struct{}), done: make(chan struct{})}
	go s.run()
	t.Cleanup(s.halt)
	return s
}

func (s *sampler) run() {
	defer close(s.done)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		list, err := s.b.List(ctx)
		cancel()
		now := time.Now()
		s.mu.Lock()
		if err != nil {
			s.errs++
		} else {
			alive := map[string]int{}
			total := 0
			for _, c := range list {
				if _, ok := s.first[c.ID]; !ok {
					s.first[c.ID] = now
					s.order = append(s.order, c.ID)
				}
				s.seen[c.ID] = c
				if c.State != watchdog.Exited {
					alive[c.Stage]++
					total++
				}
			}
			for st, n := range alive {
				s.max[st] = max(s.max[st], n)
			}
			s.total = max(s.total, total)
			s.alive = alive
		}
		s.mu.Unlock()
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
	}
}

func (s *sampler) halt() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

// maxOf is the most containers of stage seen alive at once.
func (s *sampler) maxOf(stage string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.max[stage]
}

// mostAlive is the most containers of all stages seen alive at once.
func (s *sampler) mostAlive() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

func (s *sampler) aliveOf(stage string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.alive[stage]
}

// launched returns the containers of stage in the order they were first seen.
func (s *sampler) launched(stage string) []watchdog.Container {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []watchdog.Container
	for _, id := range s.order {
		if c := s.seen[id]; c.Stage == stage {
			out = append(out, c)
		}
	}
	return out
}

func (s *sampler) firstSeen(stage string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range s.order {
		if s.seen[id].Stage == stage {
			return s.first[id], true
		}
	}
	return time.Time{}, false
}

// metric reads one sample from the watchdog's /metrics; -1 when absent.
func metric(t *testing.T, wd *watchdog.Watchdog, name string, labels ...string) float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	wd.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	want := name
	if len(labels) > 0 {
		var parts []string
		for i := 0; i+1 < len(labels); i += 2 {
			parts = append(parts, labels[i]+`="`+labels[i+1]+`"`)
		}
		want += "{" + strings.Join(parts, ",") + "}"
	}
	sc := bufio.NewScanner(strings.NewReader(rec.Body.String()))
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, want+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metric %s: %v", line, err)
			}
			return f
		}
	}
	return -1
}

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// watchdogBinary builds pero-watchdog once per test run.
func watchdogBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "pero-watchdog-bin-")
		if binErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", binDir+"/pero-watchdog", "./watchdog/cmd/pero-watchdog")
		cmd.Dir = testimage.RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binDir + "/pero-watchdog"
}

// process is a pero-watchdog process of a test.
type process struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// startProcess runs pero-watchdog with this world's configuration; its log goes to a file that
// the test prints when it fails.
func (w *world) startProcess(bin, id string, extra ...string) *process {
	w.t.Helper()
	logPath := w.t.TempDir() + "/" + id + ".log"
	f, err := os.Create(logPath)
	if err != nil {
		w.t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"PERO_ZOOKEEPER=" + w.zkAddr,
		"PERO_ZK_ROOT=" + w.root,
		"PERO_ZK_SESSION_TIMEOUT=4s",
		"PERO_MQ_USER=" + w.mqUser,
		"PERO_MQ_PASSWORD=" + w.mqPass,
		"PERO_MQ_VHOST=" + w.vhost,
		"PERO_WATCHDOG_ID=" + id,
		"PERO_SCOPE=" + w.scope,
		"PERO_ALLOWED_IMAGES=" + w.image,
		"PERO_CACHE_VOLUME=" + w.volume,
		"PERO_CPU_SLOTS=-1",
		"PERO_METRICS_ADDR=",
		"PERO_STOP_TIMEOUT=10s",
		"PERO_RUNNER_ENV=PERO_CONNECT_TIMEOUT=20s,PERO_STATS_INTERVAL=500ms,PERO_BATCH_WAIT=20ms,LOG_FORMAT=text",
		"LOG_FORMAT=text",
	}, extra...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	p := &process{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	w.t.Cleanup(func() {
		p.signal(os.Interrupt)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-p.done
		}
		if w.t.Failed() {
			b, _ := os.ReadFile(logPath)
			w.t.Logf("log of %s:\n%s", id, b)
		}
	})
	return p
}

func (p *process) signal(s os.Signal) {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(s)
	}
}

// kill ends the process the hard way: no cleanup, its ZooKeeper session left to expire.
func (p *process) kill() {
	p.signal(os.Kill)
	<-p.done
}

// peroStatus runs `pero status` against this world and returns its output.
func (w *world) peroStatus() string {
	w.t.Helper()
	var stdout, stderr strings.Builder
	vars := map[string]string{"PERO_MQ_USER": w.mqUser, "PERO_MQ_PASSWORD": w.mqPass}
	env := &cli.Env{Stdout: &stdout, Stderr: &stderr, Stdin: strings.NewReader(""),
		Getenv: func(k string) string { return vars[k] }, Logger: quiet()}
	code := cli.Main(ctxFor(w.t, 30*time.Second), env,
		[]string{"status", "--zookeeper", w.zkAddr, "--zk-root", w.root, "--vhost", w.vhost})
	if code != 0 {
		w.t.Fatalf("pero status: exit %d: %s", code, stderr.String())
	}
	return stdout.String()
}

// containersColumn returns the CONTAINERS column of stage's row in `pero status` output.
func containersColumn(out, stage string) string {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && f[0] == stage {
			return f[len(f)-1]
		}
	}
	return ""
}

// waitReaped waits until the backend lists no container of the scope: they exited and the
// watchdog removed them. On timeout it shows what is left and the last lines of each.
func (w *world) waitReaped(b watchdog.Backend, d time.Duration) {
	w.t.Helper()
	start := time.Now()
	for {
		list, err := b.List(ctxFor(w.t, 10*time.Second))
		if err == nil && len(list) == 0 {
			return
		}
		if time.Since(start) > d {
			for _, c := range list {
				logs, _ := b.Logs(ctxFor(w.t, 10*time.Second), c.ID, 15)
				w.t.Logf("left: %s stage %s state %s exit %d created %s\n%s", c.Name, c.Stage, c.State, c.ExitCode,
					c.Created.Format(time.RFC3339Nano), logs)
			}
			w.t.Fatalf("containers not reaped within %s (list error %v)", d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
