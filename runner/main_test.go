package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pero-worker/pero-worker/function"
	"github.com/pero-worker/pero-worker/function/builtin"
	"github.com/pero-worker/pero-worker/internal/message"
	"github.com/pero-worker/pero-worker/internal/rabbitmq"
	"github.com/pero-worker/pero-worker/internal/testenv"
	"github.com/pero-worker/pero-worker/internal/zookeeper"
)

func TestMain(m *testing.M) {
	code := m.Run()
	cleanupBinary()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// testLog is where the runners of the tests log: only errors unless PERO_TEST_LOG=debug.
func testLog(t *testing.T) *slog.Logger {
	level := slog.LevelError
	if strings.EqualFold(os.Getenv("PERO_TEST_LOG"), "debug") {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("test", t.Name())
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// env is one test's world: a ZooKeeper root of its own with the broker (and file server)
// registered, a stage and an output queue with unique names.
type env struct {
	t        *testing.T
	top      string // unique top-level znode, deleted after the test
	root     string
	stage    string
	out      string
	zk       *zookeeper.Store
	mq       *rabbitmq.Conn
	mqUser   string
	mqPass   string
	vhost    string
	cacheDir string
}

func newEnv(t *testing.T, settings zookeeper.Settings, config string) *env {
	t.Helper()
	zkAddr := testenv.ZooKeeper(t)
	amqpURL := testenv.AMQPURL(t)
	u, err := url.Parse(amqpURL)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, top: "/" + testenv.Unique("rt"), stage: testenv.Unique("rs"), cacheDir: t.TempDir()}
	e.root = e.top + "/pero"
	e.out = e.stage + "-out"
	e.mqUser = u.User.Username()
	e.mqPass, _ = u.User.Password()
	e.vhost = strings.TrimPrefix(u.Path, "/")
	ctx := testCtx(t, 30*time.Second)

	e.zk, err = zookeeper.Dial(ctx, zookeeper.Config{Servers: []string{zkAddr}, Root: e.root, Logger: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		testenv.DeleteTree(e.zk.Conn(), e.top)
		e.zk.Close()
	})
	e.mq, err = rabbitmq.Dial(ctx, rabbitmq.Config{URLs: []string{amqpURL}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		for _, q := range []string{e.stage, rabbitmq.DeadLetterQueue(e.stage), e.out, rabbitmq.DeadLetterQueue(e.out)} {
			_ = e.mq.DeleteQueue(ctx, q, false)
		}
		_ = e.mq.Close()
	})
	if err := e.zk.AddServer(ctx, zookeeper.MQServers, u.Host); err != nil {
		t.Fatal(err)
	}
	if err := e.zk.CreateStage(ctx, zookeeper.Stage{Name: e.stage, Config: config, Settings: settings}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{e.stage, e.out} {
		if err := e.mq.DeclareStage(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// vars is the runner's environment for this test, plus extra KEY=value pairs.
func (e *env) vars(container string, extra ...string) []string {
	return append([]string{
		"PERO_STAGE=" + e.stage,
		"PERO_ZOOKEEPER=" + testenv.ZooKeeper(e.t),
		"PERO_ZK_ROOT=" + e.root,
		"PERO_MQ_USER=" + e.mqUser,
		"PERO_MQ_PASSWORD=" + e.mqPass,
		"PERO_MQ_VHOST=" + e.vhost,
		"PERO_CACHE_DIR=" + e.cacheDir,
		"PERO_CONTAINER_ID=" + container,
		"PERO_CONNECT_TIMEOUT=20s",
		"PERO_STATS_INTERVAL=200ms",
		"PERO_BATCH_WAIT=20ms",
		"LOG_LEVEL=info",
	}, extra...)
}

// runner builds an in-process runner for this test.
func (e *env) runner(reg *function.Registry, extra ...string) *Runner {
	e.t.Helper()
	cfg, err := New(e.vars(testenv.Unique("c"), extra...))
	if err != nil {
		e.t.Fatal(err)
	}
	if reg == nil {
		reg = builtin.Registry()
	}
	r, err := NewRunner(cfg, Deps{Registry: reg, Logger: testLog(e.t)})
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// startRunner starts r and stops it when the test ends.
func (e *env) startRunner(r *Runner) {
	e.t.Helper()
	if err := r.Start(testCtx(e.t, 60*time.Second)); err != nil {
		e.t.Fatalf("Start: %v", err)
	}
	e.t.Cleanup(r.Stop)
}

// request builds a request for the stage (route stage -> out unless given) with a page name.
func (e *env) request(name string, route ...string) *message.ProcessingRequest {
	e.t.Helper()
	if len(route) == 0 {
		route = []string{e.stage, e.out}
	}
	req, err := message.NewRequest(name, []byte("image of "+name), route, 0, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	return req
}

// publish sends bodies to queue with confirms.
func (e *env) publish(queue string, bodies ...[]byte) {
	e.t.Helper()
	pub, err := e.mq.NewPublisher()
	if err != nil {
		e.t.Fatal(err)
	}
	defer pub.Close()
	items := make([]rabbitmq.Outgoing, len(bodies))
	for i, b := range bodies {
		items[i] = rabbitmq.Outgoing{Queue: queue, Msg: rabbitmq.Message{Body: b}}
	}
	for i, err := range pub.PublishBatch(testCtx(e.t, 30*time.Second), items) {
		if err != nil {
			e.t.Fatalf("publish %d: %v", i, err)
		}
	}
}

// publishPages sends one request per name to the stage and returns their uuids in order.
func (e *env) publishPages(names ...string) []string {
	e.t.Helper()
	var bodies [][]byte
	var ids []string
	for _, n := range names {
		req := e.request(n)
		b, err := message.Encode(req)
		if err != nil {
			e.t.Fatal(err)
		}
		bodies = append(bodies, b)
		ids = append(ids, req.GetUuid())
	}
	e.publish(e.stage, bodies...)
	return ids
}

// got is a message taken from a queue by a collector.
type got struct {
	req     *message.ProcessingRequest
	body    []byte
	headers map[string]any
}

// collector takes every message of a queue, acking it, until the test ends.
type collector struct {
	mu   sync.Mutex
	msgs []got
	more chan struct{}
	cons *rabbitmq.Consumer
	done chan struct{}
}

func (e *env) collect(queue string) *collector {
	e.t.Helper()
	cons, err := e.mq.Consume(testCtx(e.t, 10*time.Second), queue, 200)
	if err != nil {
		e.t.Fatal(err)
	}
	c := &collector{more: make(chan struct{}, 1), cons: cons, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for d := range cons.Deliveries() {
			req, _ := message.Decode(d.Body)
			_ = d.Ack()
			c.mu.Lock()
			c.msgs = append(c.msgs, got{req: req, body: d.Body, headers: d.Headers})
			c.mu.Unlock()
			select {
			case c.more <- struct{}{}:
			default:
			}
		}
	}()
	e.t.Cleanup(func() {
		_ = cons.Close()
		<-c.done
	})
	return c
}

func (c *collector) all() []got {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.msgs)
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.msgs)
}

// waitFor waits until the collector holds at least n messages.
func (c *collector) waitFor(t *testing.T, n int, within time.Duration) []got {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		if c.count() >= n {
			return c.all()
		}
		select {
		case <-c.more:
		case <-deadline.C:
			t.Fatalf("collected %d messages within %s, want %d", c.count(), within, n)
		}
	}
}

// uniqueUUIDs counts distinct uuids and duplicates.
func uniqueUUIDs(msgs []got) (unique map[string]int, dups int) {
	unique = map[string]int{}
	for _, m := range msgs {
		unique[m.req.GetUuid()]++
		if unique[m.req.GetUuid()] > 1 {
			dups++
		}
	}
	return unique, dups
}

// ready is the number of ready messages in queue.
func (e *env) ready(queue string) int {
	e.t.Helper()
	info, err := e.mq.Inspect(testCtx(e.t, 10*time.Second), queue)
	if err != nil {
		e.t.Fatal(err)
	}
	return info.Ready
}

// waitResult waits for the runner to end.
func waitResult(t *testing.T, r *Runner, within time.Duration) (Result, error) {
	t.Helper()
	select {
	case <-r.Done():
	case <-time.After(within):
		t.Fatalf("runner still running after %s", within)
	}
	return r.Wait()
}

// lockedBuffer collects a process's output safely.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var errTest = errors.New("test")
