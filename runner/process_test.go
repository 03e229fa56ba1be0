package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pero-worker/pero-worker/internal/ftpstore"
	"github.com/pero-worker/pero-worker/internal/message"
	"github.com/pero-worker/pero-worker/internal/rabbitmq"
	"github.com/pero-worker/pero-worker/internal/testenv"
	"github.com/pero-worker/pero-worker/internal/zookeeper"
)

// The process tests run the real binary, built once with -tags perotest (which adds the
// "crash" function, see cmd/pero-runner/registry_perotest.go).
var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

func runnerBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("process test: builds and runs the binary")
	}
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "pero-runner-test-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "pero-runner")
		goTool, err := exec.LookPath("go")
		if err != nil {
			binErr = err
			return
		}
		out, err := exec.Command(goTool, "build", "-tags", "perotest", "-o", binPath, "./cmd/pero-runner").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func cleanupBinary() {
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
}

// proc is one runner process.
type proc struct {
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
	code int
}

func (e *env) spawn(container string, extra ...string) *proc {
	e.t.Helper()
	bin := runnerBinary(e.t)
	p := &proc{out: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin)
	p.cmd.Env = e.vars(container, extra...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() {
		defer close(p.done)
		err := p.cmd.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			p.code = ee.ExitCode() // -1 when killed by a signal
		default:
			p.code = -2
		}
	}()
	e.t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if e.t.Failed() {
			e.t.Logf("output of %s:\n%s", container, p.out.String())
		}
	})
	return p
}

// wait waits for the process to exit and returns its exit code (-1 when killed by a signal).
func (p *proc) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(within):
		t.Fatalf("runner still running after %s; output:\n%s", within, p.out.String())
		return 0
	}
}

// logLines returns the JSON log lines of the process with the given msg.
func (p *proc) logLines(msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(p.out.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

func sleepSettings(batch int) zookeeper.Settings {
	return zookeeper.Settings{Function: "sleep", BatchSize: batch, IdleTimeout: zookeeper.Duration(time.Second)}
}

func pageNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("p%03d.jpg", i)
	}
	return names
}

func TestProcessIdleExit(t *testing.T) {
	e := newEnv(t, noopSettings(), "")
	t0 := time.Now()
	p := e.spawn("idle", "PERO_IDLE_TIMEOUT=500ms")
	if code := p.wait(t, 30*time.Second); code != ExitOK {
		t.Fatalf("exit code %d, want 0; output:\n%s", code, p.out.String())
	}
	fin := p.logLines("runner finished")
	if len(fin) != 1 || fin[0]["reason"] != ReasonIdle || fin[0]["stage"] != e.stage || fin[0]["container"] != "idle" {
		t.Fatalf("finish line %v", fin)
	}
	if took := time.Since(t0); took < 500*time.Millisecond {
		t.Errorf("exited after %s, before the idle timeout", took)
	}
	if strings.Contains(p.out.String(), e.mqPass) {
		t.Error("the log shows the broker password")
	}
}

func TestProcessKill9MidBatchLosesNothing(t *testing.T) {
	const n, batch = 120, 8
	e := newEnv(t, sleepSettings(batch), "[sleep]\nseconds = 0.02\n")
	out := e.collect(e.out)
	ids := e.publishPages(pageNames(n)...)

	p1 := e.spawn("k1")
	out.waitFor(t, 3*batch, 60*time.Second)
	// Mid-batch: each batch takes 160ms, so a kill now almost surely lands inside one.
	time.Sleep(50 * time.Millisecond)
	if err := p1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := p1.wait(t, 10*time.Second); code != -1 {
		t.Fatalf("exit code %d after SIGKILL", code)
	}
	before := out.count()

	p2 := e.spawn("k2")
	msgs := out.waitFor(t, n, 90*time.Second)
	if code := p2.wait(t, 60*time.Second); code != ExitOK {
		t.Fatalf("second runner exit code %d", code)
	}
	msgs = out.all()
	unique, dups := uniqueUUIDs(msgs)
	for _, id := range ids {
		if unique[id] == 0 {
			t.Fatalf("message %s lost", id)
		}
	}
	if dups > batch {
		t.Errorf("%d duplicates, want at most one batch (%d)", dups, batch)
	}
	if e.ready(rabbitmq.DeadLetterQueue(e.stage)) != 0 {
		t.Error("messages in the dead-letter queue")
	}
	t.Logf("killed after %d messages out; %d duplicates", before, dups)
}

func TestProcessSIGTERMFinishesBatchAndRequeuesRest(t *testing.T) {
	const n, batch = 20, 4
	e := newEnv(t, sleepSettings(batch), "[sleep]\nseconds = 0.2\n")
	out := e.collect(e.out)
	ids := e.publishPages(pageNames(n)...)

	p1 := e.spawn("t1", "PERO_IDLE_TIMEOUT=1m", "PERO_GRACE_PERIOD=20s")
	out.waitFor(t, batch, 30*time.Second)
	time.Sleep(200 * time.Millisecond) // the second batch (800ms) is under way
	t0 := time.Now()
	if err := p1.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p1.wait(t, 20*time.Second); code != ExitOK {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	took := time.Since(t0)
	// The batch in progress completed: exactly two batches went out, the rest is back.
	testenv.Eventually(t, 10*time.Second, "two batches out and the rest back in the queue", func() bool {
		return out.count() == 2*batch && e.ready(e.stage) == n-2*batch
	})
	if took > 2*time.Second {
		t.Errorf("took %s to stop", took)
	}
	fin := p1.logLines("runner finished")
	if len(fin) != 1 || fin[0]["reason"] != ReasonStopped {
		t.Errorf("finish line %v", fin)
	}

	p2 := e.spawn("t2", "PERO_IDLE_TIMEOUT=500ms", "PERO_CONFIG=")
	out.waitFor(t, n, 60*time.Second)
	if code := p2.wait(t, 60*time.Second); code != ExitOK {
		t.Fatalf("second runner exit code %d", code)
	}
	unique, dups := uniqueUUIDs(out.all())
	if dups != 0 || len(unique) != n {
		t.Fatalf("%d unique of %d, %d duplicates", len(unique), n, dups)
	}
	for _, id := range ids {
		if unique[id] != 1 {
			t.Fatalf("message %s missing", id)
		}
	}
}

func TestProcessPoisonMessageEndsInDeadLetterQueue(t *testing.T) {
	const maxDeliveries = 3
	s := sleepSettings(4)
	s.Function, s.MaxDeliveries = "crash", maxDeliveries
	e := newEnv(t, s, "[sleep]\nseconds = 0.01\n[crash]\nkill_marker = POISON\n")
	out := e.collect(e.out)
	dead := e.collect(rabbitmq.DeadLetterQueue(e.stage))
	names := []string{"a.jpg", "b.jpg", "POISON.jpg", "c.jpg", "d.jpg", "e.jpg", "f.jpg", "g.jpg"}
	ids := e.publishPages(names...)

	crashes := 0
	for run := 0; ; run++ {
		if run > maxDeliveries+2 {
			t.Fatalf("still crashing after %d runs: the poison loops", run)
		}
		p := e.spawn(fmt.Sprintf("poison-%d", run), "PERO_IDLE_TIMEOUT=700ms")
		code := p.wait(t, 60*time.Second)
		if code == ExitOK {
			break
		}
		if code != -1 {
			t.Fatalf("run %d: exit code %d; output:\n%s", run, code, p.out.String())
		}
		crashes++
	}
	if crashes != maxDeliveries {
		t.Errorf("%d crashes, want %d (one per delivery)", crashes, maxDeliveries)
	}
	d := dead.waitFor(t, 1, 10*time.Second)[0]
	if req, _ := message.Decode(d.body); req.GetUuid() != ids[2] || d.headers[HeaderReason] != reasonMaxDeliveries ||
		d.headers[HeaderDeliveries] != int32(maxDeliveries) {
		t.Errorf("dead letter %s headers %v", req.GetUuid(), d.headers)
	}
	msgs := out.waitFor(t, len(names)-1, 10*time.Second)
	unique, _ := uniqueUUIDs(msgs)
	for i, id := range ids {
		if i != 2 && unique[id] == 0 {
			t.Errorf("good message %s lost", names[i])
		}
	}
	if unique[ids[2]] != 0 || dead.count() != 1 || e.ready(e.stage) != 0 {
		t.Errorf("poison out %d, dead %d, left %d", unique[ids[2]], dead.count(), e.ready(e.stage))
	}
}

// withFTP registers the test FTP server and returns a store for uploads.
func (e *env) withFTP() (*ftpstore.Store, []string) {
	e.t.Helper()
	addr, user, pw := testenv.FTP(e.t)
	if err := e.zk.AddServer(e.t.Context(), zookeeper.FTPServers, addr); err != nil {
		e.t.Fatal(err)
	}
	st, err := ftpstore.New(ftpstore.Config{Addr: addr, User: user, Password: pw})
	if err != nil {
		e.t.Fatal(err)
	}
	return st, []string{"PERO_FTP_USER=" + user, "PERO_FTP_PASSWORD=" + pw}
}

// uploadModel puts data on the FTP server and points the stage at it with the given checksum.
func (e *env) uploadModel(st *ftpstore.Store, data []byte, sum string) {
	e.t.Helper()
	remote := "runner-tests/" + e.stage + "/model.tar.gz"
	ctx := testCtx(e.t, 30*time.Second)
	if _, _, err := st.Upload(ctx, remote, bytes.NewReader(data)); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = st.Delete(ctx, remote)
	})
	if _, err := e.zk.UpdateStage(ctx, e.stage, func(s *zookeeper.Stage) error {
		s.ConfigPath, s.ModelSHA256 = remote, sum
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
}

func TestProcessBadModelExitsWithoutTakingMessages(t *testing.T) {
	good := tarGz(t, entry{name: "model/weights", body: "w"})
	corrupt := []byte("definitely not a tar.gz")
	other := tarGz(t, entry{name: "model/weights", body: "other"})
	evil := tarGz(t, entry{name: "../../escape", body: "x"})
	tests := []struct {
		name string
		data []byte
		sum  string
		want string
	}{
		{"corrupt", corrupt, sumOf(corrupt), "corrupt model archive"},
		{"wrong checksum", good, sumOf(other), "sha256 mismatch"},
		{"unsafe", evil, sumOf(evil), "unsafe model archive"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, noopSettings(), "")
			st, ftpVars := e.withFTP()
			e.uploadModel(st, tc.data, tc.sum)
			e.publishPages("1", "2", "3")
			p := e.spawn("m", ftpVars...)
			if code := p.wait(t, 60*time.Second); code != ExitModel {
				t.Fatalf("exit code %d, want %d; output:\n%s", code, ExitModel, p.out.String())
			}
			failed := p.logLines("runner failed to start")
			if len(failed) != 1 || !strings.Contains(fmt.Sprint(failed[0]["err"]), tc.want) {
				t.Fatalf("error line %v, want %q", failed, tc.want)
			}
			if got := e.ready(e.stage); got != 3 {
				t.Errorf("%d messages in the queue, want all 3 untouched", got)
			}
			if des, _ := os.ReadDir(filepath.Join(e.cacheDir, "models")); len(des) != 0 {
				t.Errorf("cache holds %v", des)
			}
		})
	}
}

func TestProcessTwoRunnersShareOneCacheEntry(t *testing.T) {
	e := newEnv(t, noopSettings(), "")
	st, ftpVars := e.withFTP()
	// Big enough that the download and unpacking overlap the second runner's start.
	data := tarGz(t, entry{name: "model/weights.bin", body: strings.Repeat("0123456789abcdef", 1<<18)},
		entry{name: "model/config.ini", body: "[m]\n"})
	sum := sumOf(data)
	e.uploadModel(st, data, sum)
	e.publishPages(pageNames(20)...)
	out := e.collect(e.out)
	vars := append(ftpVars, "PERO_IDLE_TIMEOUT=1s")
	p1 := e.spawn("share-1", vars...)
	p2 := e.spawn("share-2", vars...)
	for _, p := range []*proc{p1, p2} {
		if code := p.wait(t, 60*time.Second); code != ExitOK {
			t.Fatalf("exit code %d; output:\n%s", code, p.out.String())
		}
	}
	out.waitFor(t, 20, 10*time.Second)
	fetched := 0
	for _, p := range []*proc{p1, p2} {
		ready := p.logLines("model ready")
		if len(ready) != 1 || ready[0]["sha256"] != sum {
			t.Fatalf("model ready lines %v", ready)
		}
		if ready[0]["fetched"] == true {
			fetched++
		}
	}
	if fetched != 1 {
		t.Errorf("%d runners fetched the model, want exactly 1", fetched)
	}
	des, err := os.ReadDir(filepath.Join(e.cacheDir, "models"))
	if err != nil {
		t.Fatal(err)
	}
	var entries []string
	for _, de := range des {
		entries = append(entries, de.Name())
	}
	if len(entries) != 2 || entries[0] != sum || entries[1] != sum+".json" {
		t.Errorf("cache models/ holds %v, want one model and its manifest", entries)
	}
	if b, err := os.ReadFile(filepath.Join(e.cacheDir, "models", sum, "model", "config.ini")); err != nil || string(b) != "[m]\n" {
		t.Errorf("config.ini: %q %v", b, err)
	}
}
