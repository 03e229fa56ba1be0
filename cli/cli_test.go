package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pero-worker/pero-worker/cli"
	"github.com/pero-worker/pero-worker/internal/message"
	"github.com/pero-worker/pero-worker/internal/rabbitmq"
	"github.com/pero-worker/pero-worker/internal/testenv"
)

// world is one isolated configuration: its own ZooKeeper root and the real services.
type world struct {
	t   *testing.T
	env map[string]string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	zk := testenv.ZooKeeper(t)
	testenv.AMQPURL(t)
	ftpAddr, ftpUser, ftpPW := testenv.FTP(t)
	w := &world{t: t, env: map[string]string{
		"PERO_ZOOKEEPER":    zk,
		"PERO_ZK_ROOT":      "/" + testenv.Unique("clitest") + "/pero",
		"PERO_MQ_USER":      testenv.DefaultMQUser,
		"PERO_MQ_PASSWORD":  testenv.DefaultMQPassword,
		"PERO_FTP_USER":     ftpUser,
		"PERO_FTP_PASSWORD": ftpPW,
	}}
	w.ok("servers", "add", "mq", "127.0.0.1:5672")
	w.ok("servers", "add", "mq-monitoring", "127.0.0.1:15672")
	w.ok("servers", "add", "ftp", ftpAddr)
	return w
}

func (w *world) run(args ...string) (stdout, stderr string, code int) {
	w.t.Helper()
	var out, errb bytes.Buffer
	env := &cli.Env{Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return w.env[k] }}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code = cli.Main(ctx, env, args)
	return out.String(), errb.String(), code
}

func (w *world) ok(args ...string) string {
	w.t.Helper()
	out, errs, code := w.run(args...)
	if code != 0 {
		w.t.Fatalf("pero %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// stage creates a stage with a unique name and removes its queues at the end.
func (w *world) stage(prefix string, extra ...string) string {
	w.t.Helper()
	name := testenv.Unique(prefix)
	args := append([]string{"stage", "create", name}, extra...)
	if len(extra) == 0 {
		args = append(args, "--image", "pero-function:test", "--function", "noop")
	}
	w.ok(args...)
	w.t.Cleanup(func() { w.run("stage", "delete", name, "--force") })
	return name
}

func writePNG(t *testing.T, path string, seed int) {
	t.Helper()
	img := image.NewGray(image.Rect(0, 0, 40+seed, 30+seed%7))
	for i := range img.Pix {
		img.Pix[i] = uint8(i*seed + seed)
	}
	img.Set(1, 1, color.Gray{Y: uint8(seed)})
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := png.Encode(f, img); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// passThrough moves every message of stage to its next stage, as a worker that does
// nothing would, and returns when it has moved n messages.
func passThrough(t *testing.T, stage string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := rabbitmq.Dial(ctx, rabbitmq.Config{URLs: []string{testenv.AMQPURL(t)}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	pub, err := conn.NewPublisher()
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	cons, err := conn.Consume(ctx, stage, 16)
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	for moved := 0; moved < n; moved++ {
		var d *rabbitmq.Delivery
		select {
		case d = <-cons.Deliveries():
		case <-ctx.Done():
			t.Fatalf("moved %d of %d messages before the deadline", moved, n)
		}
		req, err := message.Decode(d.Body)
		if err != nil {
			t.Fatal(err)
		}
		next, err := message.Advance(req, stage, &message.StageLog{HostId: "test"})
		if err != nil {
			t.Fatal(err)
		}
		body, err := message.Encode(req)
		if err != nil {
			t.Fatal(err)
		}
		if err := pub.Publish(ctx, next, rabbitmq.Message{Body: body, Priority: d.Priority}); err != nil {
			t.Fatal(err)
		}
		if err := d.Ack(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSubmitPassDownload(t *testing.T) {
	w := newWorld(t)
	work := w.stage("work")
	out := w.stage("out", "--output")

	src := t.TempDir()
	const pages = 20
	for i := range pages {
		writePNG(t, filepath.Join(src, fmt.Sprintf("page-%02d.png", i)), i+1)
	}
	stdout := w.ok("submit", "--stages", work, out, src)
	ids := map[string]string{} // uuid -> file
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		id, file, ok := strings.Cut(line, "\t")
		if !ok {
			t.Fatalf("bad submit output line %q", line)
		}
		ids[id] = file
	}
	if len(ids) != pages {
		t.Fatalf("submit reported %d pages, want %d", len(ids), pages)
	}

	passThrough(t, work, pages)

	dir := t.TempDir()
	w.ok("download", "--stage", out, "--dir", dir, "--idle", "1s")
	for id, file := range ids {
		want, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dir, id, filepath.Base(file)))
		if err != nil {
			t.Fatalf("page %s (%s) missing: %v", id, file, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("page %s differs from %s", id, file)
		}
		var sum struct {
			Status string
			Stages []struct{ Stage string }
		}
		js, err := os.ReadFile(filepath.Join(dir, id, "summary.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(js, &sum); err != nil {
			t.Fatal(err)
		}
		if sum.Status != "OK" || len(sum.Stages) != 1 || sum.Stages[0].Stage != work {
			t.Errorf("summary of %s: %s", id, js)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != pages {
		t.Errorf("%d entries in the download dir, want %d (no temporary leftovers)", len(entries), pages)
	}
	// A second download finds nothing new and leaves the files alone.
	w.ok("download", "--stage", out, "--dir", dir, "--idle", "500ms")
}

func TestDownloadReportsFailures(t *testing.T) {
	w := newWorld(t)
	out := w.stage("out", "--output")
	ctx := context.Background()
	conn, err := rabbitmq.Dial(ctx, rabbitmq.Config{URLs: []string{testenv.AMQPURL(t)}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	pub, err := conn.NewPublisher()
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	req, _ := message.NewRequest("bad.png", []byte("x"), []string{"ocr", out}, 0, time.Now())
	if _, err := message.Fail(req, "ocr", &message.StageLog{HostId: "h"}, fmt.Errorf("image is truncated")); err != nil {
		t.Fatal(err)
	}
	body, _ := message.Encode(req)
	for _, b := range [][]byte{body, []byte("definitely not protobuf \xff\xff")} {
		if err := pub.Publish(ctx, out, rabbitmq.Message{Body: b}); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	_, stderr, code := w.run("download", "--stage", out, "--dir", dir, "--idle", "1s")
	if code != cli.ExitFailed {
		t.Fatalf("exit %d, want %d; stderr: %s", code, cli.ExitFailed, stderr)
	}
	if !strings.Contains(stderr, req.Uuid) || !strings.Contains(stderr, "image is truncated") {
		t.Errorf("failure not named: %s", stderr)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "_undecodable", "*.bin")); len(m) != 1 {
		t.Errorf("undecodable message not kept: %v", m)
	}
	js, err := os.ReadFile(filepath.Join(dir, req.Uuid, "summary.json"))
	if err != nil || !strings.Contains(string(js), `"status": "FAILED"`) {
		t.Errorf("summary: %s %v", js, err)
	}
}

func TestBadInput(t *testing.T) {
	w := newWorld(t)
	out := w.stage("out", "--output")
	work := w.stage("work")
	dir := t.TempDir()
	good := filepath.Join(dir, "good.png")
	writePNG(t, good, 3)
	notImage := filepath.Join(dir, "notes.png")
	if err := os.WriteFile(notImage, []byte("hello, I am text"), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		wantCode int
		wantText string
		secret   string // must not appear in the output
	}{
		{"unknown stage", nil, []string{"submit", "--stages", "no-such-stage", out, good}, cli.ExitFailed, `unknown stage "no-such-stage"`, ""},
		{"empty stage list", nil, []string{"submit", good}, cli.ExitUsage, "--stages", ""},
		{"not an image", nil, []string{"submit", "--stages", out, good, notImage}, cli.ExitFailed, "notes.png: not a PNG, JPEG or TIFF image", ""},
		{"missing file", nil, []string{"submit", "--stages", out, filepath.Join(dir, "nope.png")}, cli.ExitFailed, "nope.png", ""},
		{"missing server list", map[string]string{"PERO_ZK_ROOT": "/" + testenv.Unique("empty") + "/pero"},
			[]string{"stage", "create", "x", "--output"}, cli.ExitFailed, "pero servers add mq", ""},
		{"unreachable zookeeper", nil, []string{"stage", "list", "--zookeeper", "127.0.0.1:1", "--connect-timeout", "2s"},
			cli.ExitUnavailable, "ZooKeeper", ""},
		{"wrong credentials", map[string]string{"PERO_MQ_PASSWORD": "wrong-secret-4711"},
			[]string{"submit", "--stages", out, good}, cli.ExitUnavailable, "PERO_MQ_PASSWORD", "wrong-secret-4711"},
		{"route ends at a processing stage", nil, []string{"submit", "--stages", work, good}, cli.ExitFailed, "processing stage", ""},
		{"unknown command", nil, []string{"frobnicate"}, cli.ExitUsage, "unknown command", ""},
		{"bad server address", nil, []string{"servers", "add", "mq", "localhost"}, cli.ExitUsage, "HOST:PORT", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			saved := map[string]string{}
			for k, v := range tc.env {
				saved[k] = w.env[k]
				w.env[k] = v
			}
			defer func() {
				for k, v := range saved {
					w.env[k] = v
				}
			}()
			start := time.Now()
			stdout, stderr, code := w.run(tc.args...)
			if code != tc.wantCode {
				t.Errorf("exit %d, want %d\nstderr: %s", code, tc.wantCode, stderr)
			}
			if !strings.Contains(stderr, tc.wantText) {
				t.Errorf("stderr lacks %q:\n%s", tc.wantText, stderr)
			}
			if tc.secret != "" && strings.Contains(stdout+stderr, tc.secret) {
				t.Errorf("output shows the password:\n%s", stdout+stderr)
			}
			if d := time.Since(start); d > 30*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
	// Nothing was published by the failed submissions.
	dl := t.TempDir()
	w.ok("download", "--stage", out, "--dir", dl, "--idle", "500ms")
	if e, _ := os.ReadDir(dl); len(e) != 0 {
		t.Errorf("a refused submission published %d pages", len(e))
	}
}

func TestStageLifecycle(t *testing.T) {
	w := newWorld(t)
	archive := filepath.Join(t.TempDir(), "model.zip")
	if err := os.WriteFile(archive, []byte("PK\x05\x06"+strings.Repeat("\x00", 18)), 0o644); err != nil {
		t.Fatal(err)
	}
	ini := filepath.Join(t.TempDir(), "config.ini")
	if err := os.WriteFile(ini, []byte("[ocr]\nbatch_size = 4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	name := w.stage("ocr", "--image", "img:1", "--config", ini, "--model-archive", archive, "--max-containers", "3", "--priority", "2")
	show := w.ok("stage", "show", name)
	for _, want := range []string{"img:1", "0-3", "models/" + name + "/", "batch_size = 4", name + ".dead"} {
		if !strings.Contains(show, want) {
			t.Errorf("stage show lacks %q:\n%s", want, show)
		}
	}
	w.ok("stage", "update", name, "--max-containers", "5")
	show = w.ok("stage", "show", name)
	if !strings.Contains(show, "0-5") || !strings.Contains(show, "img:1") {
		t.Errorf("update lost or missed a setting:\n%s", show)
	}
	// A directory is packed into a reproducible .tar.gz.
	modelDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(modelDir, "rec.onnx"), []byte("weights"), 0o644); err != nil {
		t.Fatal(err)
	}
	w.ok("stage", "update", name, "--model-archive", modelDir)
	show = w.ok("stage", "show", name)
	if !strings.Contains(show, ".tar.gz") {
		t.Errorf("directory archive not packed as .tar.gz:\n%s", show)
	}
	if list := w.ok("stage", "list"); !strings.Contains(list, name) {
		t.Errorf("stage list lacks %s:\n%s", name, list)
	}
	if _, stderr, code := w.run("stage", "create", name, "--image", "x"); code != cli.ExitFailed || !strings.Contains(stderr, "already exists") {
		t.Errorf("second create: exit %d %s", code, stderr)
	}

	// A queue holding messages is not deleted without --force.
	out := w.stage("out", "--output")
	src := filepath.Join(t.TempDir(), "p.png")
	writePNG(t, src, 5)
	w.ok("submit", "--stages", name, out, src)
	if _, stderr, code := w.run("stage", "delete", name); code != cli.ExitFailed || !strings.Contains(stderr, "--force") {
		t.Errorf("delete of a busy stage: exit %d %s", code, stderr)
	}
	w.ok("stage", "delete", name, "--force")
	if _, _, code := w.run("stage", "show", name); code != cli.ExitFailed {
		t.Errorf("deleted stage still shown")
	}
	status := w.ok("status")
	if !strings.Contains(status, out) {
		t.Errorf("status lacks %s:\n%s", out, status)
	}
}

// TestSubmitStageWords: "--stages a b out DIR" takes the words ZooKeeper knows as stages and
// the first other existing path as the start of the files, even when a directory shares a
// stage's name.
func TestSubmitStageWords(t *testing.T) {
	w := newWorld(t)
	work := w.stage("work")
	out := w.stage("out", "--output")
	cwd := t.TempDir()
	t.Chdir(cwd)
	for _, d := range []string{"scans", out} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writePNG(t, filepath.Join("scans", "a.png"), 1)
	writePNG(t, filepath.Join(out, "not-submitted.png"), 2)
	stdout := w.ok("submit", "--stages", work, out, "scans")
	if n := strings.Count(stdout, "\n"); n != 1 || !strings.Contains(stdout, "scans/a.png") {
		t.Fatalf("submitted:\n%s", stdout)
	}
	if _, stderr, code := w.run("submit", "--stages", work, "no-such-stage", out, "scans"); code != cli.ExitFailed ||
		!strings.Contains(stderr, `unknown stage "no-such-stage"`) {
		t.Errorf("unknown stage in the middle: exit %d %s", code, stderr)
	}
	passThrough(t, work, 1)
}
