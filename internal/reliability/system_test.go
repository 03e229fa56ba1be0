package reliability

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pero-worker/pero-worker/internal/message"
	"github.com/pero-worker/pero-worker/internal/rabbitmq"
	"github.com/pero-worker/pero-worker/internal/testenv"
	"github.com/pero-worker/pero-worker/internal/zookeeper"
	"github.com/pero-worker/pero-worker/watchdog"
	"github.com/pero-worker/pero-worker/watchdog/docker"
	"github.com/pero-worker/pero-worker/watchdog/status"
)

// --- what the tests build: the function image and the binaries, once per run ---

var (
	buildMu sync.Mutex
	built   = map[string]string{} // what -> image tag or binary path
	binDir  string
)

// build makes what once per test run; make returns the image tag or binary path.
func build(t *testing.T, what string, make func() (string, error)) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if v, ok := built[what]; ok {
		return v
	}
	start := time.Now()
	v, err := make()
	if err != nil {
		t.Fatalf("build %s: %v", what, err)
	}
	t.Logf("built %s in %s", what, time.Since(start).Round(100*time.Millisecond))
	built[what] = v
	return v
}

// prebuild builds the image and the watchdog while the services start; what fails is built
// again, and reported, by the test that needs it.
func prebuild() {
	buildMu.Lock()
	defer buildMu.Unlock()
	if v, err := makeImage(); err == nil {
		built["image"] = v
	}
	if v, err := makeBinary(watchdogPkg); err == nil {
		built[watchdogPkg] = v
	}
}

const watchdogPkg = "watchdog/cmd/pero-watchdog"

// functionImage is the function image without ONNX Runtime (noop and sleep stages), built
// offline by images/function/build.sh.
func functionImage(t *testing.T) string { return build(t, "image", makeImage) }

func makeImage() (string, error) {
	tag := "pero-reliability/function:" + randomHex(6)
	cmd := exec.Command(filepath.Join(repoRoot(), "images", "function", "build.sh"), "-t", tag, "--without-onnxruntime")
	cmd.Dir = repoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%w\n%s", err, out)
	}
	return tag, nil
}

// binary builds a command of this module (such as "watchdog/cmd/pero-watchdog").
func binary(t *testing.T, pkg string) string {
	return build(t, pkg, func() (string, error) { return makeBinary(pkg) })
}

func makeBinary(pkg string) (string, error) {
	if binDir == "" {
		d, err := os.MkdirTemp("", "pero-reliability-bin-")
		if err != nil {
			return "", err
		}
		binDir = d
	}
	out := filepath.Join(binDir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, "./"+pkg)
	cmd.Dir = repoRoot()
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, b)
	}
	return out, nil
}

func removeImages() {
	buildMu.Lock()
	defer buildMu.Unlock()
	for _, what := range []string{"image", "ocr-image"} {
		if tag, ok := built[what]; ok {
			_ = exec.Command("docker", "image", "rm", "--force", tag).Run()
		}
	}
}

func removeBinaries() {
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
}

// --- one test's system ---

// system is one test's deployment on the private services: a ZooKeeper root of its own with the
// broker, its management API and the file server registered, a container scope and a model
// cache volume of its own, and the function image. Everything is removed when the test ends.
type system struct {
	t      *testing.T
	svc    *services
	top    string // unique top-level znode
	root   string
	store  *zookeeper.Store
	mq     *rabbitmq.Session // survives broker restarts
	scope  string
	volume string
	image  string
	docker *docker.Backend
	// most is the most containers seen alive at once per stage; seen maps every container
	// seen to its stage.
	mostMu sync.Mutex
	most   map[string]int
	seen   map[string]string
}

func newSystem(t *testing.T) *system {
	t.Helper()
	svc := need(t)
	s := &system{t: t, svc: svc, top: "/" + testenv.Unique("rel"), scope: testenv.Unique("rel"),
		volume: testenv.Unique("pero-rel-cache"), image: functionImage(t)}
	s.root = s.top + "/pero"
	ctx := ctxFor(t, 30*time.Second)
	var err error
	s.store, err = zookeeper.Dial(ctx, zookeeper.Config{Servers: []string{svc.zkAddr()}, Root: s.root, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		testenv.DeleteTree(s.store.Conn(), s.top)
		s.store.Close()
	})
	s.mq, err = rabbitmq.DialWithRecovery(ctx, rabbitmq.Config{Addrs: []string{svc.mqAddr()}, User: svc.user,
		Password: svc.mqPassword, VHost: svc.vhost, ReconnectMax: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.mq.Close() })
	for kind, addr := range map[zookeeper.ServerKind]string{
		zookeeper.MQServers: svc.mqAddr(), zookeeper.MQMonitoringServers: svc.mgmtAddr(), zookeeper.FTPServers: svc.ftpAddr(),
	} {
		if err := s.store.AddServer(ctx, kind, addr); err != nil {
			t.Fatal(err)
		}
	}
	s.docker, err = docker.New(docker.Config{Scope: s.scope, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.docker.Close() })
	s.most, s.seen = map[string]int{}, map[string]string{}
	s.sample()
	// Registered last, so it runs first: no container of the scope outlives the test.
	t.Cleanup(func() {
		removeScope(s.scope)
		_ = exec.Command("docker", "volume", "rm", "-f", s.volume).Run()
	})
	return s
}

// sample lists the scope's containers every 200 ms until the test ends, keeping the most alive
// at once per stage.
func (s *system) sample() {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			list, err := s.docker.List(ctx)
			cancel()
			if err == nil {
				alive := map[string]int{}
				s.mostMu.Lock()
				for _, c := range list {
					s.seen[c.Name] = c.Stage
					if c.State != watchdog.Exited {
						alive[c.Stage]++
					}
				}
				for st, n := range alive {
					s.most[st] = max(s.most[st], n)
				}
				s.mostMu.Unlock()
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	s.t.Cleanup(func() {
		close(stop)
		<-done
	})
}

// launched counts the containers of stage seen so far.
func (s *system) launched(stage string) int {
	s.mostMu.Lock()
	defer s.mostMu.Unlock()
	n := 0
	for _, st := range s.seen {
		if st == stage {
			n++
		}
	}
	return n
}

// mostAlive is the most containers of stage seen alive at once.
func (s *system) mostAlive(stage string) int {
	s.mostMu.Lock()
	defer s.mostMu.Unlock()
	return s.most[stage]
}

// conn is the test's current broker connection, waiting for one while the broker is down.
func (s *system) conn() *rabbitmq.Conn {
	s.t.Helper()
	c, err := s.mq.Conn(ctxFor(s.t, 90*time.Second))
	if err != nil {
		s.t.Fatal(err)
	}
	return c
}

// stage creates a stage and declares its queue and dead-letter queue.
func (s *system) stage(st zookeeper.Stage) {
	s.t.Helper()
	ctx := ctxFor(s.t, 30*time.Second)
	if err := s.store.CreateStage(ctx, st); err != nil {
		s.t.Fatal(err)
	}
	if err := s.conn().DeclareStage(ctx, st.Name); err != nil {
		s.t.Fatal(err)
	}
}

// output creates an output stage with a unique name.
func (s *system) output() string {
	name := testenv.Unique("out")
	s.stage(zookeeper.Stage{Name: name, Settings: zookeeper.Settings{Output: true}})
	return name
}

// sleepStage creates a stage whose containers sleep seconds per page, in batches of batch, at
// most max containers at once, each exiting after 2s without work.
func (s *system) sleepStage(seconds float64, batch, max int) string {
	name := testenv.Unique("sleep")
	s.stage(zookeeper.Stage{Name: name, Config: fmt.Sprintf("[sleep]\nseconds = %g\n", seconds),
		Settings: zookeeper.Settings{Function: "sleep", Image: s.image, BatchSize: batch, MaxContainers: max,
			IdleTimeout: zookeeper.Duration(2 * time.Second)}})
	return name
}

// publish sends n pages routed through route and returns their uuids.
func (s *system) publish(n int, route ...string) []string {
	s.t.Helper()
	ids := make([]string, n)
	bodies := make([][]byte, n)
	for i := range n {
		req, err := message.NewRequest(fmt.Sprintf("page-%05d.png", i), []byte("img"), route, 0, time.Now())
		if err != nil {
			s.t.Fatal(err)
		}
		if bodies[i], err = message.Encode(req); err != nil {
			s.t.Fatal(err)
		}
		ids[i] = req.GetUuid()
	}
	s.publishRaw(route[0], bodies...)
	return ids
}

// publishRaw sends bodies as they are to queue, confirmed, in chunks.
func (s *system) publishRaw(queue string, bodies ...[]byte) {
	s.t.Helper()
	pub, err := s.conn().NewPublisher()
	if err != nil {
		s.t.Fatal(err)
	}
	defer pub.Close()
	for len(bodies) > 0 {
		n := min(len(bodies), 500)
		items := make([]rabbitmq.Outgoing, n)
		for i, b := range bodies[:n] {
			items[i] = rabbitmq.Outgoing{Queue: queue, Msg: rabbitmq.Message{Body: b}}
		}
		for i, err := range pub.PublishBatch(ctxFor(s.t, 60*time.Second), items) {
			if err != nil {
				s.t.Fatalf("publish %d: %v", i, err)
			}
		}
		bodies = bodies[n:]
	}
}

// ready is the number of ready messages in queue.
func (s *system) ready(queue string) int {
	s.t.Helper()
	info, err := s.conn().Inspect(ctxFor(s.t, 10*time.Second), queue)
	if err != nil {
		s.t.Fatal(err)
	}
	return info.Ready
}

// readyOr is ready, or -1 while the broker does not answer.
func (s *system) readyOr(queue string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := s.mq.Conn(ctx)
	if err != nil {
		return -1
	}
	info, err := c.Inspect(ctx, queue)
	if err != nil {
		return -1
	}
	return info.Ready
}

// status reads what the leading watchdog publishes.
func (s *system) status() (status.Status, error) {
	return status.Read(ctxFor(s.t, 5*time.Second), s.store.Conn(), s.root)
}

// containers lists the scope's containers.
func (s *system) containers() []watchdog.Container {
	s.t.Helper()
	list, err := s.docker.List(ctxFor(s.t, 10*time.Second))
	if err != nil {
		s.t.Fatal(err)
	}
	return list
}

// alive counts the scope's containers that have not exited.
func (s *system) alive() int {
	n := 0
	for _, c := range s.containers() {
		if c.State != watchdog.Exited {
			n++
		}
	}
	return n
}

// --- watchdog processes ---

// process is a pero-watchdog process of a test; its log goes to a file.
type process struct {
	id   string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// watchdogEnv is the environment of a watchdog process of this system: its services, a short
// session timeout, quick polls and backoffs, and runners that log text and tolerate a minute
// without the broker.
func (s *system) watchdogEnv(id string) []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"PERO_ZOOKEEPER=" + s.svc.zkAddr(),
		"PERO_ZK_ROOT=" + s.root,
		"PERO_ZK_SESSION_TIMEOUT=4s",
		"PERO_MQ_USER=" + s.svc.user,
		"PERO_MQ_PASSWORD=" + s.svc.mqPassword,
		"PERO_MQ_VHOST=" + s.svc.vhost,
		"PERO_FTP_USER=" + s.svc.user,
		"PERO_FTP_PASSWORD=" + s.svc.ftpPassword,
		"PERO_WATCHDOG_ID=" + id,
		"PERO_SCOPE=" + s.scope,
		"PERO_ALLOWED_IMAGES=" + s.image,
		"PERO_CACHE_VOLUME=" + s.volume,
		"PERO_CPU_SLOTS=-1",
		"PERO_METRICS_ADDR=",
		"PERO_POLL_INTERVAL=500ms",
		"PERO_STOP_TIMEOUT=10s",
		"PERO_BACKOFF_BASE=1s",
		"PERO_BACKOFF_MAX=4s",
		"PERO_RUNNER_ENV=PERO_CONNECT_TIMEOUT=60s,PERO_STATS_INTERVAL=500ms,PERO_BATCH_WAIT=20ms,LOG_FORMAT=text",
		"LOG_FORMAT=text",
	}
}

// watchdog starts a pero-watchdog process; extra KEY=value pairs override watchdogEnv.
func (s *system) watchdog(id string, extra ...string) *process {
	s.t.Helper()
	bin := binary(s.t, watchdogPkg)
	logPath := filepath.Join(s.t.TempDir(), id+".log")
	f, err := os.Create(logPath)
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(s.watchdogEnv(id), extra...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	p := &process{id: id, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	s.t.Cleanup(func() {
		p.signal(os.Interrupt)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-p.done
		}
		noSecrets(s.t, "log of watchdog "+id, p.text(), s.svc.secrets()...)
		if s.t.Failed() {
			s.t.Logf("log of watchdog %s:\n%s", id, p.text())
		}
	})
	return p
}

func (p *process) signal(sig os.Signal) {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(sig)
	}
}

// text is the process's log so far.
func (p *process) text() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// lines returns the log lines holding every one of the words.
func (p *process) lines(words ...string) []string {
	var out []string
	for _, l := range strings.Split(p.text(), "\n") {
		all := true
		for _, w := range words {
			all = all && strings.Contains(l, w)
		}
		if all && l != "" {
			out = append(out, l)
		}
	}
	return out
}

// leads waits until the watchdog id publishes the status as the leader.
func (s *system) leads(id string, within time.Duration) {
	s.t.Helper()
	testenv.Eventually(s.t, within, "watchdog "+id+" leads", func() bool {
		st, err := s.status()
		return err == nil && st.Watchdog == id
	})
}

// noSecrets fails the test when text shows one of the secrets.
func noSecrets(t *testing.T, what, text string, secrets ...string) {
	t.Helper()
	for _, sec := range secrets {
		if sec != "" && strings.Contains(text, sec) {
			t.Errorf("%s shows a password", what)
		}
	}
}

// --- waiting and accounting ---

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// letter is a message taken from an output or dead-letter queue.
type letter struct {
	req     *message.ProcessingRequest // nil when the body does not decode
	headers map[string]any
}

// drain takes every message of queue (nothing may be publishing to it any more).
func (s *system) drain(queue string) []letter {
	s.t.Helper()
	n := s.ready(queue)
	if n == 0 {
		return nil
	}
	cons, err := s.conn().Consume(ctxFor(s.t, 10*time.Second), queue, 500)
	if err != nil {
		s.t.Fatal(err)
	}
	defer cons.Close()
	out := make([]letter, 0, n)
	timeout := time.After(60 * time.Second)
	for len(out) < n {
		select {
		case d, ok := <-cons.Deliveries():
			if !ok {
				s.t.Fatalf("draining %s: deliveries ended: %v", queue, cons.Err())
			}
			req, err := message.Decode(d.Body)
			if err != nil {
				req = nil
			}
			out = append(out, letter{req: req, headers: d.Headers})
			if err := d.Ack(); err != nil {
				s.t.Fatal(err)
			}
		case <-timeout:
			s.t.Fatalf("draining %s: %d of %d messages", queue, len(out), n)
		}
	}
	return out
}

// account is where every page ended.
type account struct {
	out  map[string][]*message.ProcessingRequest // uuid -> its copies in the output queue
	dead map[string][]letter                     // uuid -> its dead letters
	// undecodable are dead letters whose body is not a request (a malformed message).
	undecodable []letter
	dups        int
}

// settle waits until every page of ids has reached the output queue or a dead-letter queue of
// stages, the stage queues are empty and no container of the scope runs any more, then takes
// everything from those queues and checks: no page lost, at most maxDups duplicates, no page
// nobody sent.
func (s *system) settle(ids []string, out string, stages []string, maxDups int, within time.Duration) account {
	s.t.Helper()
	start := time.Now()
	testenv.Eventually(s.t, within, fmt.Sprintf("%d pages reach a terminal state", len(ids)), func() bool {
		n := s.readyOr(out)
		for _, st := range stages {
			n += s.readyOr(rabbitmq.DeadLetterQueue(st))
		}
		return n >= len(ids)
	})
	testenv.Eventually(s.t, within, "stage queues empty and every container gone", func() bool {
		for _, st := range stages {
			if s.readyOr(st) != 0 {
				return false
			}
		}
		return s.alive() == 0
	})
	a := account{out: map[string][]*message.ProcessingRequest{}, dead: map[string][]letter{}}
	for _, l := range s.drain(out) {
		a.out[l.req.GetUuid()] = append(a.out[l.req.GetUuid()], l.req)
	}
	for _, st := range stages {
		for _, l := range s.drain(rabbitmq.DeadLetterQueue(st)) {
			if l.req == nil {
				a.undecodable = append(a.undecodable, l)
				continue
			}
			a.dead[l.req.GetUuid()] = append(a.dead[l.req.GetUuid()], l)
		}
	}
	want := map[string]bool{}
	lost := 0
	for _, id := range ids {
		want[id] = true
		n := len(a.out[id]) + len(a.dead[id])
		if n == 0 {
			lost++
			continue
		}
		a.dups += n - 1
	}
	for id := range a.out {
		if !want[id] {
			s.t.Errorf("output holds a page nobody sent: %s", id)
		}
	}
	if lost > 0 {
		s.t.Errorf("%d of %d pages lost", lost, len(ids))
	}
	if a.dups > maxDups {
		s.t.Errorf("%d duplicates, want at most %d", a.dups, maxDups)
	}
	s.t.Logf("%d pages settled in %s: %d in the output, %d dead-lettered, %d duplicates",
		len(ids), time.Since(start).Round(100*time.Millisecond), len(a.out), len(a.dead), a.dups)
	return a
}

// redelivered counts the output's pages that were delivered to a stage more than once. Every
// copy of a page counts: when a runner is killed after publishing a batch but before
// acknowledging it, the first copy in the output is its attempt 1, and the redelivery's
// attempt 2 comes second.
func (a account) redelivered() int {
	n := 0
	for _, copies := range a.out {
		if slices.ContainsFunc(copies, func(m *message.ProcessingRequest) bool {
			return slices.ContainsFunc(m.GetLogs(), func(l *message.StageLog) bool { return l.GetAttempt() > 1 })
		}) {
			n++
		}
	}
	return n
}

// atMost checks that the stage never had more than most containers alive at once.
func (s *system) atMost(stage string, most int) {
	s.t.Helper()
	if got := s.mostAlive(stage); got > most {
		s.t.Errorf("%d containers of %s at once, max is %d", got, stage, most)
	}
}

// failed counts the output's pages with status FAILED.
func (a account) failed() int {
	n := 0
	for _, copies := range a.out {
		if message.Failed(copies[0]) {
			n++
		}
	}
	return n
}

// --- cleanup helpers ---

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// removeScope removes every container labelled with the scope.
func removeScope(scope string) {
	out, _ := exec.Command("docker", "ps", "-aq", "--filter", "label="+watchdog.LabelScope+"="+scope).Output()
	if ids := strings.Fields(string(out)); len(ids) > 0 {
		_ = exec.Command("docker", append([]string{"rm", "-f", "-v"}, ids...)...).Run()
	}
}
