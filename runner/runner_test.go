package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pero-worker/pero-worker/function"
	"github.com/pero-worker/pero-worker/function/builtin"
	"github.com/pero-worker/pero-worker/internal/message"
	"github.com/pero-worker/pero-worker/internal/rabbitmq"
	"github.com/pero-worker/pero-worker/internal/testenv"
	"github.com/pero-worker/pero-worker/internal/zookeeper"
)

func noopSettings() zookeeper.Settings {
	return zookeeper.Settings{Function: "noop", BatchSize: 8, IdleTimeout: zookeeper.Duration(time.Second)}
}

func TestPipeline200MessagesNoop(t *testing.T) {
	e := newEnv(t, noopSettings(), "")
	out := e.collect(e.out)
	names := make([]string, 200)
	for i := range names {
		names[i] = fmt.Sprintf("page-%03d.jpg", i)
	}
	ids := e.publishPages(names...)
	r := e.runner(nil, "PERO_CONTAINER_ID=c-200")
	e.startRunner(r)

	// While it runs, its status node says so.
	var st Status
	testenv.Eventually(t, 10*time.Second, "status node in state running", func() bool {
		data, _, err := e.zk.Conn().Get(StatusPath(e.root, e.stage, "c-200"))
		return err == nil && json.Unmarshal(data, &st) == nil && st.State == StateRunning
	})
	if st.Function != "noop" || st.BatchSize != 8 || st.Container != "c-200" || st.Stage != e.stage {
		t.Errorf("status %+v", st)
	}

	msgs := out.waitFor(t, 200, 60*time.Second)
	res, err := waitResult(t, r, 30*time.Second)
	if err != nil || res.Reason != ReasonIdle {
		t.Fatalf("result %+v, %v; want idle exit", res, err)
	}
	if res.Messages != 200 || res.Batches < 25 {
		t.Errorf("result %+v: want 200 messages in at least 25 batches", res)
	}
	unique, dups := uniqueUUIDs(msgs)
	if len(unique) != 200 || dups != 0 {
		t.Fatalf("%d unique, %d duplicates", len(unique), dups)
	}
	for _, id := range ids {
		if unique[id] != 1 {
			t.Fatalf("message %s missing", id)
		}
	}
	stage, err := e.zk.GetStage(t.Context(), e.stage)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		req := m.req
		if req.GetStatus() != message.Status_STATUS_OK || len(req.GetProcessingStages()) != 1 ||
			req.ProcessingStages[0] != e.out || len(req.GetLogs()) != 1 {
			t.Fatalf("message %+v", req)
		}
		l := req.Logs[0]
		if l.GetStage() != e.stage || l.GetStatus() != message.LogOK || l.GetHostId() != "c-200" ||
			l.GetVersion() != stage.ConfigVersion || l.GetAttempt() != 1 || l.GetEnqueued() == nil ||
			l.GetStart() == nil || l.GetEnd().AsTime().Before(l.GetStart().AsTime()) {
			t.Fatalf("stage log %+v", l)
		}
	}
	if n := e.ready(rabbitmq.DeadLetterQueue(e.stage)); n != 0 {
		t.Errorf("%d messages in the dead-letter queue", n)
	}
	if n := e.ready(e.stage); n != 0 {
		t.Errorf("%d messages left in the stage queue", n)
	}
	// Statistics: the container's totals and avg_msg_time.
	timings, err := e.zk.Timings(t.Context(), e.stage)
	if err != nil || len(timings) != 1 || timings[0].Container != "c-200" || timings[0].Messages != 200 || timings[0].Seconds <= 0 {
		t.Errorf("timings %+v, %v", timings, err)
	}
	if stage.AvgMsgTime <= 0 {
		if s2, _ := e.zk.GetStage(t.Context(), e.stage); s2.AvgMsgTime <= 0 {
			t.Errorf("avg_msg_time not written")
		}
	}
	// The status node went with the runner.
	if ok, _, _ := e.zk.Conn().Exists(StatusPath(e.root, e.stage, "c-200")); ok {
		t.Error("status node left behind")
	}
}

func TestBadMessagesGoToDeadLetterQueueAtOnce(t *testing.T) {
	e := newEnv(t, noopSettings(), "")
	dead := e.collect(rabbitmq.DeadLetterQueue(e.stage))
	out := e.collect(e.out)
	other, _ := message.Encode(e.request("other.jpg", "elsewhere", e.out))
	lastHere, _ := message.Encode(e.request("last.jpg", e.stage))
	noInput, _ := message.Encode(&message.ProcessingRequest{Uuid: "x", ProcessingStages: []string{e.stage, e.out}})
	good, _ := message.Encode(e.request("good.jpg"))
	garbage := []byte("\xff\xfe this is not protobuf")
	e.publish(e.stage, garbage, other, lastHere, noInput, good)

	r := e.runner(nil, "PERO_IDLE_TIMEOUT=500ms")
	e.startRunner(r)
	msgs := dead.waitFor(t, 4, 20*time.Second)
	out.waitFor(t, 1, 20*time.Second)
	if _, err := waitResult(t, r, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	reasons := map[string]string{}
	for _, m := range msgs {
		reason, _ := m.headers[HeaderReason].(string)
		errText, _ := m.headers[HeaderError].(string)
		if m.headers[HeaderStage] != e.stage || m.headers[HeaderContainer] == nil || m.headers[HeaderDeadAt] == nil {
			t.Errorf("headers %v", m.headers)
		}
		reasons[string(m.body)] = reason + ": " + errText
	}
	for body, want := range map[string]string{
		string(garbage): reasonMalformed, string(other): reasonWrongStage,
		string(lastHere): reasonNoNextStage, string(noInput): reasonMalformed,
	} {
		if !strings.HasPrefix(reasons[body], want+": ") {
			t.Errorf("dead letter %q: reason %q, want %s (body kept as received)", body[:min(len(body), 20)], reasons[body], want)
		}
	}
	if dead.count() != 4 || out.count() != 1 || e.ready(e.stage) != 0 {
		t.Errorf("dead %d, out %d, left %d", dead.count(), out.count(), e.ready(e.stage))
	}
}

func TestFailedPageGoesToOutputStage(t *testing.T) {
	s := noopSettings()
	s.Function = "sleep"
	e := newEnv(t, s, "[sleep]\nfail_marker = FAIL\n")
	out := e.collect(e.out)
	// The failing page skips the middle stage and lands in the output stage.
	req := e.request("page-FAIL.jpg", e.stage, "middle-never-reached", e.out)
	b, _ := message.Encode(req)
	e.publish(e.stage, b)
	e.publishPages("ok.jpg")
	e.startRunner(e.runner(nil))
	msgs := out.waitFor(t, 2, 20*time.Second)
	for _, m := range msgs {
		if m.req.GetResults()[0].GetName() != "page-FAIL.jpg" {
			if m.req.GetStatus() != message.Status_STATUS_OK {
				t.Errorf("ok page: %+v", m.req)
			}
			continue
		}
		r := m.req
		if r.GetStatus() != message.Status_STATUS_FAILED || r.GetFailedStage() != e.stage ||
			!strings.Contains(r.GetError(), function.ErrMarked.Error()) || len(r.GetProcessingStages()) != 1 ||
			r.Logs[0].GetStatus() != message.LogFailed || !message.Failed(r) {
			t.Errorf("failed page: %+v", r)
		}
	}
}

func TestInputByReferenceFailsClearly(t *testing.T) {
	e := newEnv(t, noopSettings(), "")
	out := e.collect(e.out)
	req := e.request("big.tif")
	req.Results[0].Content, req.Results[0].Ref = nil, "ftp://files/payloads/big.tif"
	b, _ := message.Encode(req)
	e.publish(e.stage, b)
	e.startRunner(e.runner(nil))
	m := out.waitFor(t, 1, 20*time.Second)[0]
	if m.req.GetStatus() != message.Status_STATUS_FAILED || !strings.Contains(m.req.GetError(), "ref") {
		t.Errorf("page: %s %q", m.req.GetStatus(), m.req.GetError())
	}
}

func TestUnroutableNextStageFailsToOutput(t *testing.T) {
	e := newEnv(t, noopSettings(), "")
	out := e.collect(e.out)
	dead := e.collect(rabbitmq.DeadLetterQueue(e.stage))
	missingNext, _ := message.Encode(e.request("a.jpg", e.stage, "no-such-stage-"+e.stage, e.out))
	missingOut, _ := message.Encode(e.request("b.jpg", e.stage, "no-such-out-"+e.stage))
	e.publish(e.stage, missingNext, missingOut)
	e.startRunner(e.runner(nil))

	m := out.waitFor(t, 1, 20*time.Second)[0]
	if m.req.GetStatus() != message.Status_STATUS_FAILED || !strings.Contains(m.req.GetError(), "has no queue") ||
		len(m.req.GetLogs()) != 1 || m.req.Logs[0].GetStatus() != message.LogFailed {
		t.Errorf("failed to output: %+v", m.req)
	}
	d := dead.waitFor(t, 1, 20*time.Second)[0]
	if d.headers[HeaderReason] != reasonUnroutable || string(d.body) != string(missingOut) {
		t.Errorf("dead letter headers %v", d.headers)
	}
}

// redeliver makes the broker mark the stage's messages redelivered: take them without acking
// and close the channel.
func (e *env) redeliver(n int) {
	e.t.Helper()
	cons, err := e.mq.Consume(testCtx(e.t, 10*time.Second), e.stage, n)
	if err != nil {
		e.t.Fatal(err)
	}
	for range n {
		select {
		case <-cons.Deliveries():
		case <-time.After(10 * time.Second):
			e.t.Fatal("no delivery")
		}
	}
	_ = cons.Close()
}

func TestRedeliveryIsCountedAndEndsInDeadLetterQueue(t *testing.T) {
	s := noopSettings()
	s.MaxDeliveries = 3
	e := newEnv(t, s, "")
	out := e.collect(e.out)
	dead := e.collect(rabbitmq.DeadLetterQueue(e.stage))
	fresh := e.request("fresh.jpg") // was in a batch when a runner died: counted once, a suspect now
	held := e.request("held.jpg")   // a suspect only held in the prefetch window: not counted
	held.Attempts = 1
	worn := e.request("worn.jpg") // a suspect that killed two runners already and a third now
	worn.Attempts = 2
	if err := newSuspectLog(e.zk, e.stage, systemClock{}).begin(worn.GetUuid(), "dead-runner", 2); err != nil {
		t.Fatal(err)
	}
	var bodies [][]byte
	for _, r := range []*message.ProcessingRequest{fresh, held, worn} {
		b, _ := message.Encode(r)
		bodies = append(bodies, b)
	}
	e.publish(e.stage, bodies...)
	e.redeliver(3)

	e.startRunner(e.runner(nil))
	msgs := out.waitFor(t, 2, 20*time.Second)
	attempt := map[string]int32{}
	for _, m := range msgs {
		attempt[m.req.GetUuid()] = m.req.Logs[0].GetAttempt()
		if m.req.GetAttempts() != 0 {
			t.Errorf("attempts not reset on the way out: %d", m.req.GetAttempts())
		}
	}
	if attempt[fresh.GetUuid()] != 2 || attempt[held.GetUuid()] != 2 {
		t.Errorf("attempts %v: fresh and held must both be on their second delivery", attempt)
	}
	d := dead.waitFor(t, 1, 20*time.Second)[0]
	if d.headers[HeaderReason] != reasonMaxDeliveries || d.headers[HeaderDeliveries] != int32(3) {
		t.Errorf("dead letter headers %v", d.headers)
	}
	if got, _ := message.Decode(d.body); got.GetUuid() != worn.GetUuid() {
		t.Errorf("dead-lettered %s, want %s", got.GetUuid(), worn.GetUuid())
	}
	// Every record is gone once the outcomes are settled.
	testenv.Eventually(t, 10*time.Second, "suspect records removed", func() bool {
		kids, _, err := e.zk.Conn().Children(SuspectsPath(e.root, e.stage))
		return err == nil && len(kids) == 0
	})
}

// panicky panics on pages whose name contains PANIC.
func panicky() *function.Registry {
	r := builtin.Registry()
	r.Register("panicky", func(ctx context.Context, opts function.Options) (function.Function, error) {
		return function.Func(func(ctx context.Context, batch []function.Page) []function.Output {
			for _, p := range batch {
				if strings.Contains(p.Name, "PANIC") {
					panic("bad page " + p.Name)
				}
			}
			return make([]function.Output, len(batch))
		}), nil
	})
	return r
}

func TestPanickingPageIsIsolatedAndDeadLettered(t *testing.T) {
	s := noopSettings()
	s.Function = "panicky"
	s.MaxDeliveries = 2
	e := newEnv(t, s, "")
	out := e.collect(e.out)
	dead := e.collect(rabbitmq.DeadLetterQueue(e.stage))
	ids := e.publishPages("a.jpg", "b.jpg", "PANIC.jpg", "c.jpg", "d.jpg")
	r := e.runner(panicky(), "PERO_IDLE_TIMEOUT=1s")
	e.startRunner(r)
	msgs := out.waitFor(t, 4, 30*time.Second)
	dead.waitFor(t, 1, 30*time.Second)
	res, err := waitResult(t, r, 30*time.Second)
	if err != nil || res.Reason != ReasonIdle {
		t.Fatalf("result %+v, %v: the runner must survive a panic", res, err)
	}
	unique, dups := uniqueUUIDs(msgs)
	if len(unique) != 4 || dups != 0 || unique[ids[2]] != 0 {
		t.Errorf("out: %v (%d duplicates)", unique, dups)
	}
	if out.count() != 4 || dead.count() != 1 {
		t.Errorf("out %d, dead %d", out.count(), dead.count())
	}
}

func TestExitRules(t *testing.T) {
	t.Run("idle", func(t *testing.T) {
		e := newEnv(t, noopSettings(), "")
		r := e.runner(nil, "PERO_IDLE_TIMEOUT=300ms")
		t0 := time.Now()
		e.startRunner(r)
		res, err := waitResult(t, r, 10*time.Second)
		if err != nil || res.Reason != ReasonIdle || time.Since(t0) < 300*time.Millisecond {
			t.Fatalf("%+v %v after %s", res, err, time.Since(t0))
		}
	})
	t.Run("max batches", func(t *testing.T) {
		s := noopSettings()
		s.BatchSize, s.MaxBatches = 2, 2
		e := newEnv(t, s, "")
		out := e.collect(e.out)
		e.publishPages("1", "2", "3", "4", "5", "6", "7")
		r := e.runner(nil)
		e.startRunner(r)
		res, err := waitResult(t, r, 20*time.Second)
		if err != nil || res.Reason != ReasonMaxBatches || res.Batches != 2 {
			t.Fatalf("%+v %v", res, err)
		}
		out.waitFor(t, 4, 10*time.Second)
		testenv.Eventually(t, 10*time.Second, "the rest back in the queue", func() bool { return e.ready(e.stage) == 3 })
		if out.count() != 4 {
			t.Errorf("out %d, want 4", out.count())
		}
	})
	t.Run("max lifetime", func(t *testing.T) {
		e := newEnv(t, noopSettings(), "")
		r := e.runner(nil, "PERO_IDLE_TIMEOUT=1m", "PERO_MAX_LIFETIME=700ms")
		e.startRunner(r)
		res, err := waitResult(t, r, 20*time.Second)
		if err != nil || res.Reason != ReasonMaxLifetime {
			t.Fatalf("%+v %v", res, err)
		}
	})
	t.Run("config changed", func(t *testing.T) {
		e := newEnv(t, noopSettings(), "")
		r := e.runner(nil, "PERO_IDLE_TIMEOUT=1m")
		e.startRunner(r)
		if _, err := e.zk.UpdateStage(t.Context(), e.stage, func(s *zookeeper.Stage) error {
			s.Config = "[new]\n"
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		res, err := waitResult(t, r, 20*time.Second)
		if err != nil || res.Reason != ReasonConfigChanged {
			t.Fatalf("%+v %v", res, err)
		}
	})
	t.Run("stop", func(t *testing.T) {
		e := newEnv(t, noopSettings(), "")
		r := e.runner(nil, "PERO_IDLE_TIMEOUT=1m")
		e.startRunner(r)
		r.Stop()
		r.Stop()
		res, err := r.Wait()
		if err != nil || res.Reason != ReasonStopped {
			t.Fatalf("%+v %v", res, err)
		}
	})
}

func TestStopBeforeStart(t *testing.T) {
	e := newEnv(t, noopSettings(), "")
	r := e.runner(nil)
	r.Stop()
	err := r.Start(t.Context())
	if err == nil || ExitCode(err) != ExitOK {
		t.Fatalf("Start after Stop: %v (code %d)", err, ExitCode(err))
	}
	r.Stop()
}

func TestStartFailuresHaveExitCodes(t *testing.T) {
	t.Run("missing stage", func(t *testing.T) {
		e := newEnv(t, noopSettings(), "")
		cfg, _ := New(e.vars("c", "PERO_STAGE=no-such-stage"))
		r, _ := NewRunner(cfg, Deps{Registry: builtin.Registry(), Logger: testLog(t)})
		if err := r.Start(t.Context()); ExitCode(err) != ExitConfig || !strings.Contains(err.Error(), "does not exist") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("unknown function", func(t *testing.T) {
		e := newEnv(t, zookeeper.Settings{Function: "nope"}, "")
		if err := e.runner(nil).Start(t.Context()); ExitCode(err) != ExitConfig || !strings.Contains(err.Error(), `"nope"`) {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("function init", func(t *testing.T) {
		s := noopSettings()
		s.Function = "sleep"
		e := newEnv(t, s, "[sleep]\nseconds = minus one\n")
		if err := e.runner(nil).Start(t.Context()); ExitCode(err) != ExitModel {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("output stage", func(t *testing.T) {
		e := newEnv(t, zookeeper.Settings{Function: "noop", Output: true}, "")
		if err := e.runner(nil).Start(t.Context()); ExitCode(err) != ExitConfig {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("no broker registered", func(t *testing.T) {
		e := newEnv(t, noopSettings(), "")
		addrs, _ := e.zk.Servers(t.Context(), zookeeper.MQServers)
		for _, a := range addrs {
			_ = e.zk.RemoveServer(t.Context(), zookeeper.MQServers, a)
		}
		if err := e.runner(nil).Start(t.Context()); ExitCode(err) != ExitConfig {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("broker refuses", func(t *testing.T) {
		e := newEnv(t, noopSettings(), "")
		if err := e.runner(nil, "PERO_MQ_PASSWORD=wrong").Start(t.Context()); ExitCode(err) != ExitUnavailable {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("zookeeper unreachable", func(t *testing.T) {
		e := newEnv(t, noopSettings(), "")
		err := e.runner(nil, "PERO_ZOOKEEPER=127.0.0.1:1", "PERO_CONNECT_TIMEOUT=1s").Start(t.Context())
		if ExitCode(err) != ExitUnavailable {
			t.Fatalf("err %v", err)
		}
	})
}

// slowCounting counts the pages it finished; each takes per.
func slowCounting(per time.Duration, done *atomic.Int64) *function.Registry {
	r := builtin.Registry()
	r.Register("slow", func(ctx context.Context, opts function.Options) (function.Function, error) {
		return function.Func(func(ctx context.Context, batch []function.Page) []function.Output {
			out := make([]function.Output, len(batch))
			for i := range batch {
				select {
				case <-ctx.Done():
					function.Cancelled(ctx, out, i)
					return out
				case <-time.After(per):
					done.Add(1)
				}
			}
			return out
		}), nil
	})
	return r
}

func TestStopFinishesBatchAndHandsBackTheRest(t *testing.T) {
	s := noopSettings()
	s.Function, s.BatchSize = "slow", 4
	e := newEnv(t, s, "")
	out := e.collect(e.out)
	var done atomic.Int64
	e.publishPages("1", "2", "3", "4", "5", "6", "7", "8", "9", "10")
	r := e.runner(slowCounting(100*time.Millisecond, &done), "PERO_IDLE_TIMEOUT=1m", "PERO_GRACE_PERIOD=10s")
	e.startRunner(r)
	testenv.Eventually(t, 10*time.Second, "first page processed", func() bool { return done.Load() >= 1 })
	r.Stop()
	res, err := r.Wait()
	if err != nil || res.Reason != ReasonStopped {
		t.Fatalf("%+v %v", res, err)
	}
	out.waitFor(t, 4, 10*time.Second)
	testenv.Eventually(t, 10*time.Second, "the rest back in the queue", func() bool { return e.ready(e.stage) == 6 })
	if out.count() != 4 {
		t.Errorf("out %d: the batch in progress (4) must complete, nothing else", out.count())
	}
}

func TestGracePeriodCancelsBatchAndHandsItBack(t *testing.T) {
	s := noopSettings()
	s.Function, s.BatchSize = "slow", 4
	e := newEnv(t, s, "")
	out := e.collect(e.out)
	var done atomic.Int64
	e.publishPages("1", "2", "3", "4")
	r := e.runner(slowCounting(time.Second, &done), "PERO_IDLE_TIMEOUT=1m", "PERO_GRACE_PERIOD=300ms")
	e.startRunner(r)
	testenv.Eventually(t, 10*time.Second, "first page processed", func() bool { return done.Load() >= 1 })
	r.Stop()
	if _, err := r.Wait(); err != nil {
		t.Fatal(err)
	}
	// The finished pages went on; the cancelled ones are back in the queue, not failed.
	testenv.Eventually(t, 10*time.Second, "the cancelled pages back in the queue", func() bool {
		return out.count()+e.ready(e.stage) == 4
	})
	for _, m := range out.all() {
		if m.req.GetStatus() != message.Status_STATUS_OK {
			t.Errorf("page %s failed: %s", m.req.GetUuid(), m.req.GetError())
		}
	}
	if e.ready(e.stage) == 0 {
		t.Error("nothing handed back")
	}
}

func TestBatchTimeoutFailsPages(t *testing.T) {
	s := noopSettings()
	s.Function, s.BatchSize = "slow", 2
	s.BatchTimeout = zookeeper.Duration(200 * time.Millisecond)
	e := newEnv(t, s, "")
	out := e.collect(e.out)
	var done atomic.Int64
	e.publishPages("1")
	e.startRunner(e.runner(slowCounting(5*time.Second, &done)))
	m := out.waitFor(t, 1, 20*time.Second)[0]
	if m.req.GetStatus() != message.Status_STATUS_FAILED || !strings.Contains(m.req.GetError(), "batch timeout") {
		t.Errorf("page: %s %q", m.req.GetStatus(), m.req.GetError())
	}
}

func TestDeadLetterHeadersKeepOriginalHeaders(t *testing.T) {
	d := &deadLetters{stage: "s", container: "c", pub: &fakePub{}, counters: &counters{}, clock: newFakeClock(time.Unix(5, 0)), log: testLog(t)}
	ack := &countAck{}
	if err := d.send(incoming{ack: ack, body: []byte("x"), headers: map[string]any{"k": "v"}}, reasonMalformed, errTest, 2); err != nil {
		t.Fatal(err)
	}
	p := d.pub.(*fakePub)
	if len(p.sent) != 1 || p.sent[0].queue != "s.dead" || p.sent[0].msg.Headers["k"] != "v" ||
		p.sent[0].msg.Headers[HeaderReason] != reasonMalformed || p.sent[0].msg.Headers[HeaderDeliveries] != int32(2) || ack.acks != 1 {
		t.Errorf("sent %+v, acks %d", p.sent, ack.acks)
	}
	p.err = errors.New("broker says no")
	if err := d.send(incoming{ack: ack, body: []byte("x")}, reasonMalformed, errTest, 0); err == nil || ack.acks != 1 {
		t.Errorf("a failed dead-letter publish must not ack: %v, acks %d", err, ack.acks)
	}
}

type fakePub struct {
	sent []struct {
		queue string
		msg   rabbitmq.Message
	}
	err error
}

func (p *fakePub) Publish(ctx context.Context, queue string, m rabbitmq.Message) error {
	if p.err != nil {
		return p.err
	}
	p.sent = append(p.sent, struct {
		queue string
		msg   rabbitmq.Message
	}{queue, m})
	return nil
}

func (p *fakePub) PublishBatch(ctx context.Context, items []rabbitmq.Outgoing) []error {
	errs := make([]error, len(items))
	for i, it := range items {
		errs[i] = p.Publish(ctx, it.Queue, it.Msg)
	}
	return errs
}

type countAck struct{ acks, nacks int }

func (a *countAck) Ack() error      { a.acks++; return nil }
func (a *countAck) Nack(bool) error { a.nacks++; return nil }

// closeConnections closes the broker connections named name through the management API and
// reports how many it closed.
func (e *env) closeConnections(name string) int {
	e.t.Helper()
	base := testenv.ManagementURL(e.t)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(e.t.Context(), http.MethodGet, base+"/api/connections", nil)
	req.SetBasicAuth(e.mqUser, e.mqPass)
	resp, err := client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	var conns []struct {
		Name             string         `json:"name"`
		ClientProperties map[string]any `json:"client_properties"`
	}
	err = json.NewDecoder(resp.Body).Decode(&conns)
	resp.Body.Close()
	if err != nil {
		e.t.Fatal(err)
	}
	n := 0
	for _, c := range conns {
		if c.ClientProperties["connection_name"] != name {
			continue
		}
		del, _ := http.NewRequestWithContext(e.t.Context(), http.MethodDelete, base+"/api/connections/"+url.PathEscape(c.Name), nil)
		del.SetBasicAuth(e.mqUser, e.mqPass)
		if resp, err := client.Do(del); err == nil {
			resp.Body.Close()
			n++
		}
	}
	return n
}

func TestReconnectsAfterLosingTheBroker(t *testing.T) {
	s := noopSettings()
	s.Function, s.BatchSize = "sleep", 4
	e := newEnv(t, s, "[sleep]\nseconds = 0.02\n")
	out := e.collect(e.out)
	ids := e.publishPages(pageNames(200)...)
	r := e.runner(nil, "PERO_CONTAINER_ID=reconnect", "PERO_IDLE_TIMEOUT=1s")
	e.startRunner(r)
	out.waitFor(t, 8, 20*time.Second)
	testenv.Eventually(t, 20*time.Second, "the runner's connection closed by the broker", func() bool {
		return e.closeConnections("pero-runner "+e.stage+" reconnect") > 0
	})
	msgs := out.waitFor(t, len(ids), 60*time.Second)
	res, err := waitResult(t, r, 60*time.Second)
	if err != nil || res.Reason != ReasonIdle {
		t.Fatalf("result %+v, %v", res, err)
	}
	unique, dups := uniqueUUIDs(out.all())
	for _, id := range ids {
		if unique[id] == 0 {
			t.Fatalf("message %s lost", id)
		}
	}
	if dups > s.BatchSize {
		t.Errorf("%d duplicates, want at most one batch", dups)
	}
	t.Logf("%d messages, %d duplicates", len(msgs), dups)
}
