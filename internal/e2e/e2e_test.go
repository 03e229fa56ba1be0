package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pero-worker/pero-worker/cli"
	"github.com/pero-worker/pero-worker/function/ocr"
	"github.com/pero-worker/pero-worker/function/ocr/eval"
	"github.com/pero-worker/pero-worker/internal/rabbitmq"
	"github.com/pero-worker/pero-worker/internal/testenv"
	"github.com/pero-worker/pero-worker/watchdog"
)

// maxCER bounds the CER over the 24 synthetic pages. `make bench-ocr` measures 0.04% for the
// default models (pero-latin; tesseract 3.95%); the bound leaves room for platform
// differences in the runtime's arithmetic, not for a broken pipeline (which scores far above it).
const maxCER = 0.02

func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// assets finds the models (the directory make models fills), the ONNX Runtime library and
// the corpus pages: $PERO_MODELS_DIR or models/ (make models).
func assets(t *testing.T, root string) (models, ortLib, pages string) {
	t.Helper()
	type cand struct{ models, lib string }
	var cands []cand
	if d := os.Getenv("PERO_MODELS_DIR"); d != "" {
		cands = append(cands, cand{filepath.Join(d, "ocr"), filepath.Join(d, "onnxruntime", "libonnxruntime.so.1")})
	}
	cands = append(cands,
		cand{filepath.Join(root, "models", "ocr"), filepath.Join(root, "models", "onnxruntime", "libonnxruntime.so.1")})
	for _, c := range cands {
		if exists(filepath.Join(c.models, "ch_PP-OCRv4_det_infer.onnx")) && exists(filepath.Join(c.models, ocr.DefaultRecognizeModel)) && exists(c.lib) {
			models, ortLib = c.models, c.lib
			break
		}
	}
	if models == "" {
		testenv.Missing(t, "OCR models", "run `make models`")
	}
	pages = cmpOr(os.Getenv("PERO_CORPUS"), filepath.Join(root, "..", "shared", "corpus", "public"))
	if !exists(filepath.Join(pages, "pages")) {
		testenv.Missing(t, "evaluation corpus", pages+"/pages not found (set PERO_CORPUS)")
	}
	return models, ortLib, pages
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// pero runs the CLI in-process with the given environment.
func pero(t *testing.T, env map[string]string, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	code := cli.Main(ctx, &cli.Env{Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return env[k] }}, args)
	if code != 0 {
		t.Fatalf("pero %s: exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
	}
	return out.String()
}

func TestPagesThroughContainers(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: builds an image and runs containers")
	}
	root := repoRoot(t)
	testenv.Docker(t)
	zk := testenv.ZooKeeper(t)
	amqpURL := testenv.AMQPURL(t)
	mgmt := testenv.ManagementURL(t)
	ftpAddr, ftpUser, ftpPW := testenv.FTP(t)
	models, ortLib, corpus := assets(t, root)

	tmp := t.TempDir()
	scope := testenv.Unique("e2e")
	image := "pero-e2e/function:" + scope
	volume := "pero-e2e-cache-" + scope
	t.Cleanup(func() {
		filter := "label=" + watchdog.LabelScope + "=" + scope
		if out, _ := exec.Command("docker", "ps", "-aq", "--filter", filter).Output(); len(bytes.TrimSpace(out)) > 0 {
			_ = exec.Command("docker", append([]string{"rm", "-f", "-v"}, strings.Fields(string(out))...)...).Run()
		}
		_ = exec.Command("docker", "volume", "rm", "-f", volume).Run()
		_ = exec.Command("docker", "rmi", "-f", image).Run()
	})

	// The function image, built offline from this checkout, and the watchdog binary.
	start := time.Now()
	build := exec.Command(filepath.Join(root, "images", "function", "build.sh"), "-t", image, "--onnxruntime", ortLib)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build function image: %v\n%s", err, out)
	}
	wdBin := filepath.Join(tmp, "pero-watchdog")
	if out, err := exec.Command("go", "build", "-o", wdBin, filepath.Join(root, "watchdog", "cmd", "pero-watchdog")).CombinedOutput(); err != nil {
		t.Fatalf("build watchdog: %v\n%s", err, out)
	}
	t.Logf("image %s and watchdog built in %s", image, time.Since(start).Round(time.Second))

	zkRoot := "/" + scope + "/pero"
	env := map[string]string{
		"PERO_ZOOKEEPER": zk, "PERO_ZK_ROOT": zkRoot,
		"PERO_MQ_USER": testenv.DefaultMQUser, "PERO_MQ_PASSWORD": testenv.DefaultMQPassword,
		"PERO_FTP_USER": ftpUser, "PERO_FTP_PASSWORD": ftpPW,
	}
	pero(t, env, "servers", "add", "mq", "127.0.0.1:5672")
	pero(t, env, "servers", "add", "mq-monitoring", strings.TrimPrefix(mgmt, "http://"))
	pero(t, env, "servers", "add", "ftp", ftpAddr)

	detect, recognize, out := "detect-"+scope, "recognize-"+scope, "out-"+scope
	recIni := filepath.Join(tmp, "recognize.ini")
	if err := os.WriteFile(recIni, []byte("[output]\nformats = page,alto,txt\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	common := []string{"--image", image, "--model-archive", models, "--max-containers", "1", "--batch-size", "4",
		"--idle-timeout", "5s"}
	pero(t, env, append([]string{"stage", "create", detect, "--function", "detect"}, common...)...)
	pero(t, env, append([]string{"stage", "create", recognize, "--function", "recognize", "--config", recIni}, common...)...)
	pero(t, env, "stage", "create", out, "--output")
	t.Cleanup(func() {
		for _, s := range []string{detect, recognize, out} {
			var o, e bytes.Buffer
			cli.Main(context.Background(), &cli.Env{Stdout: &o, Stderr: &e, Getenv: func(k string) string { return env[k] }},
				[]string{"stage", "delete", s, "--force"})
		}
	})

	// The watchdog, as a user runs it.
	wdLog := filepath.Join(tmp, "watchdog.log")
	logFile, err := os.Create(wdLog)
	if err != nil {
		t.Fatal(err)
	}
	wd := exec.Command(wdBin)
	wd.Env = append(os.Environ(),
		"PERO_ZOOKEEPER="+zk, "PERO_ZK_ROOT="+zkRoot, "PERO_SCOPE="+scope,
		"PERO_MQ_USER="+testenv.DefaultMQUser, "PERO_MQ_PASSWORD="+testenv.DefaultMQPassword,
		"PERO_FTP_USER="+ftpUser, "PERO_FTP_PASSWORD="+ftpPW,
		"PERO_ALLOWED_IMAGES="+image, "PERO_NETWORK=host", "PERO_CACHE_VOLUME="+volume,
		"PERO_METRICS_ADDR=", "PERO_CPU_SLOTS=2")
	wd.Stdout, wd.Stderr = logFile, logFile
	if err := wd.Start(); err != nil {
		t.Fatal(err)
	}
	wdDone := make(chan error, 1)
	go func() { wdDone <- wd.Wait() }()
	stopWatchdog := func() {
		_ = wd.Process.Signal(syscall.SIGTERM)
		select {
		case <-wdDone:
		case <-time.After(30 * time.Second):
			_ = wd.Process.Kill()
			<-wdDone
		}
	}
	defer func() {
		stopWatchdog()
		logFile.Close()
		if t.Failed() {
			b, _ := os.ReadFile(wdLog)
			t.Logf("watchdog log (tail):\n%s", tail(string(b), 4000))
		}
	}()

	// Submit the 24 pages.
	submitted := time.Now()
	lines := pero(t, env, "submit", "--stages", detect, recognize, out, filepath.Join(corpus, "pages"))
	ids := map[string]string{} // uuid -> image path
	for _, l := range strings.Split(strings.TrimSpace(lines), "\n") {
		if id, file, ok := strings.Cut(l, "\t"); ok {
			ids[id] = file
		}
	}
	if len(ids) != 24 {
		t.Fatalf("submitted %d pages, want 24", len(ids))
	}

	// Wait for all of them in the output queue.
	ctx := context.Background()
	conn, err := rabbitmq.Dial(ctx, rabbitmq.Config{URLs: []string{amqpURL}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		info, err := conn.Inspect(ctx, out)
		if err != nil {
			t.Fatal(err)
		}
		if info.Ready >= len(ids) {
			break
		}
		if time.Now().After(deadline) {
			for _, q := range []string{detect, recognize, rabbitmq.DeadLetterQueue(detect), rabbitmq.DeadLetterQueue(recognize)} {
				qi, _ := conn.Inspect(ctx, q)
				t.Logf("%s: %d ready", q, qi.Ready)
			}
			t.Fatalf("%d of %d pages in %s after %s", info.Ready, len(ids), out, time.Since(submitted))
		}
		time.Sleep(time.Second)
	}
	t.Logf("24 pages through detect -> recognize -> out in %s", time.Since(submitted).Round(time.Second))

	// Every container exits on its idle timeout and the watchdog reaps it.
	filter := "label=" + watchdog.LabelScope + "=" + scope
	reapDeadline := time.Now().Add(2 * time.Minute)
	for {
		o, err := exec.Command("docker", "ps", "-aq", "--filter", filter).Output()
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(o)) == 0 {
			break
		}
		if time.Now().After(reapDeadline) {
			t.Fatalf("containers not reaped: %s", o)
		}
		time.Sleep(time.Second)
	}

	// Download and score.
	dl := filepath.Join(tmp, "results")
	pero(t, env, "download", "--stage", out, "--dir", dl, "--idle", "1s")
	var total eval.Counts
	for id, img := range ids {
		var sum struct {
			Status, Error string
			Stages        []struct{ Stage string }
		}
		js, err := os.ReadFile(filepath.Join(dl, id, "summary.json"))
		if err != nil {
			t.Fatalf("%s: %v", img, err)
		}
		if err := json.Unmarshal(js, &sum); err != nil {
			t.Fatal(err)
		}
		if sum.Status != "OK" || len(sum.Stages) != 2 {
			t.Errorf("%s: status %s %s, stages %v", filepath.Base(img), sum.Status, sum.Error, sum.Stages)
			continue
		}
		stem := strings.TrimSuffix(filepath.Base(img), filepath.Ext(img))
		for _, f := range []string{stem + "_page.xml", stem + ".alto.xml"} {
			if !exists(filepath.Join(dl, id, f)) {
				t.Errorf("%s: %s missing", stem, f)
			}
		}
		hyp, err := os.ReadFile(filepath.Join(dl, id, stem+".txt"))
		if err != nil || len(bytes.TrimSpace(hyp)) == 0 {
			t.Errorf("%s: no text (%v)", stem, err)
			continue
		}
		ref, err := os.ReadFile(filepath.Join(corpus, "pages", stem+".txt"))
		if err != nil {
			t.Fatal(err)
		}
		total.Add(eval.Compare(string(ref), string(hyp)))
	}
	t.Logf("CER %.2f%% WER %.2f%% over %d pages", 100*total.CER(), 100*total.WER(), len(ids))
	if total.CER() > maxCER {
		t.Errorf("CER %.2f%% above %.0f%%", 100*total.CER(), 100*maxCER)
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
