package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/pero-worker/pero-worker/internal/message"
	"github.com/pero-worker/pero-worker/internal/rabbitmq"
)

func downloadCommand() *Command {
	return &Command{
		Name:    "download",
		Summary: "Download finished pages from the output stage",
		Run:     runDownload,
	}
}

const downloadHelp = `Take finished pages from the output stage's queue and write each under DIR/<uuid>/:
the result files by name (the input image too) and summary.json with the status, the
error of a failed page and per-stage timings. A message is acknowledged only after its
files are durably on disk; a page already downloaded is skipped. Messages that cannot be
decoded are kept as DIR/_undecodable/<sha256>.bin.

Without --keep-running the command stops once the queue stays empty for --idle.
Exits 1 when any downloaded page failed, listing them.

Example:
  pero download --stage out --dir results/`

// pageSummary is summary.json of one page.
type pageSummary struct {
	UUID        string         `json:"uuid"`
	PageUUID    string         `json:"page_uuid,omitempty"`
	Input       string         `json:"input"`
	Status      string         `json:"status"` // "OK" or "FAILED"
	Error       string         `json:"error,omitempty"`
	FailedStage string         `json:"failed_stage,omitempty"`
	Priority    int32          `json:"priority"`
	Submitted   *time.Time     `json:"submitted,omitempty"`
	Downloaded  time.Time      `json:"downloaded"`
	Files       []string       `json:"files"`
	Remote      []remoteFile   `json:"remote_files,omitempty"`
	Stages      []stageSummary `json:"stages"`
}

type remoteFile struct {
	Name   string `json:"name"`
	Ref    string `json:"ref"`
	SHA256 string `json:"sha256,omitempty"`
	Size   int64  `json:"size,omitempty"`
}

type stageSummary struct {
	Stage    string     `json:"stage"`
	Host     string     `json:"host,omitempty"`
	Status   string     `json:"status"`
	Enqueued *time.Time `json:"enqueued,omitempty"`
	Start    *time.Time `json:"start,omitempty"`
	End      *time.Time `json:"end,omitempty"`
	Seconds  float64    `json:"seconds,omitempty"`
	Attempt  int32      `json:"attempt,omitempty"`
	Version  string     `json:"config_version,omitempty"`
	Error    string     `json:"error,omitempty"`
	Log      string     `json:"log,omitempty"`
}

func runDownload(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "download", "download --stage OUT --dir DIR [flags]", downloadHelp)
	cf := addConnFlags(fs, env)
	stage := fs.String("stage", "out", "output stage to download from")
	dir := fs.String("dir", "", "directory for the results (created if missing)")
	keep := fs.Bool("keep-running", false, "keep waiting for new pages until interrupted or --timeout")
	timeout := fs.Duration("timeout", 0, "stop after this long (0 = no limit)")
	idle := fs.Duration("idle", 3*time.Second, "without --keep-running, stop when no page arrived for this long and the queue is empty")
	prefetch := fs.Int("prefetch", 64, "messages held unacknowledged at a time")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return usageErr("--dir is required")
	}
	if err := checkStageName(*stage); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return failed(err, "")
	}
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	st, err := cf.openZK(ctx, env)
	if err != nil {
		return err
	}
	defer st.Close()
	mq, err := cf.openMQ(ctx, env, st)
	if err != nil {
		return err
	}
	defer mq.Close()
	if _, err := mq.Inspect(ctx, *stage); errors.Is(err, rabbitmq.ErrQueueNotFound) {
		return failed(fmt.Errorf("queue %q does not exist", *stage), "see `pero stage list`")
	} else if err != nil {
		return unavailable(err, "")
	}
	cons, err := mq.Consume(ctx, *stage, *prefetch)
	if err != nil {
		return unavailable(err, "")
	}
	defer cons.Close()

	w := &resultWriter{dir: *dir}
	bar := newProgress(env.Stderr, -1, "downloading")
	timer := time.NewTimer(*idle)
	defer timer.Stop()
	var loopErr error
loop:
	for {
		select {
		case <-ctx.Done():
			if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				loopErr = ctx.Err()
			}
			break loop
		case d, ok := <-cons.Deliveries():
			if !ok {
				loopErr = fmt.Errorf("consumer closed: %v", cons.Err())
				break loop
			}
			if err := w.write(d.Body); err != nil {
				_ = d.Nack(true)
				loopErr = err
				break loop
			}
			if err := d.Ack(); err != nil {
				loopErr = fmt.Errorf("ack: %w", err)
				break loop
			}
			bar.Add(1)
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
			timer.Reset(*idle)
		case <-timer.C:
			if *keep {
				timer.Reset(*idle)
				continue
			}
			info, err := mq.Inspect(ctx, *stage)
			if err == nil && info.Ready == 0 {
				break loop
			}
			timer.Reset(*idle)
		}
	}
	_ = cons.Cancel()
	bar.Finish()
	fmt.Fprintf(env.Stderr, "downloaded %d pages to %s (%d failed, %d already there, %d undecodable)\n",
		w.written, *dir, len(w.failures), w.duplicates, w.undecodable)
	if loopErr != nil {
		if errors.Is(loopErr, context.Canceled) {
			return loopErr
		}
		return failed(loopErr, "pages not yet written stay in the queue; run the command again")
	}
	if n := len(w.failures); n > 0 {
		for _, f := range w.failures {
			fmt.Fprintf(env.Stderr, "  FAILED %s\n", f)
		}
		return failed(fmt.Errorf("%d pages failed", n), "see summary.json in each page's directory")
	}
	return nil
}

// resultWriter writes pages durably: files into a temporary directory, fsync, rename.
type resultWriter struct {
	dir         string
	written     int
	duplicates  int
	undecodable int
	failures    []string
}

var safeIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

func (w *resultWriter) write(body []byte) error {
	req, err := message.Decode(body)
	if err != nil && errors.Is(err, message.ErrMalformed) {
		return w.keepUndecodable(body)
	}
	id := req.GetUuid()
	if !safeIDRE.MatchString(id) {
		sum := sha256.Sum256(body)
		id = "msg-" + hex.EncodeToString(sum[:8])
	}
	final := filepath.Join(w.dir, id)
	if _, err := os.Stat(final); err == nil {
		w.duplicates++
		return nil
	}
	sum := summarize(req)
	if err != nil { // decodable, but not a valid request (no stages or no input)
		sum.Status, sum.Error = "FAILED", err.Error()
	}
	if sum.Status == "FAILED" {
		w.failures = append(w.failures, fmt.Sprintf("%s (%s): %s", id, sum.Input, sum.Error))
	}
	tmp, err := os.MkdirTemp(w.dir, ".tmp-"+id+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp) // a no-op after the rename
	used := map[string]bool{"summary.json": true}
	for i, d := range req.GetResults() {
		if d.GetRef() != "" && len(d.GetContent()) == 0 {
			sum.Remote = append(sum.Remote, remoteFile{Name: d.GetName(), Ref: d.GetRef(), SHA256: d.GetSha256(), Size: d.GetSize()})
			continue
		}
		name := safeFileName(d.GetName(), i)
		for used[name] {
			name = fmt.Sprintf("%d-%s", i, name)
		}
		used[name] = true
		if err := writeFileSync(filepath.Join(tmp, name), d.GetContent()); err != nil {
			return err
		}
		sum.Files = append(sum.Files, name)
	}
	js, err := json.MarshalIndent(sum, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileSync(filepath.Join(tmp, "summary.json"), append(js, '\n')); err != nil {
		return err
	}
	if err := syncDir(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	if err := syncDir(w.dir); err != nil {
		return err
	}
	w.written++
	return nil
}

func (w *resultWriter) keepUndecodable(body []byte) error {
	d := filepath.Join(w.dir, "_undecodable")
	if err := os.MkdirAll(d, 0o755); err != nil {
		return err
	}
	sum := sha256.Sum256(body)
	name := filepath.Join(d, hex.EncodeToString(sum[:])+".bin")
	tmp := name + ".tmp"
	if err := writeFileSync(tmp, body); err != nil {
		return err
	}
	if err := os.Rename(tmp, name); err != nil {
		return err
	}
	if err := syncDir(d); err != nil {
		return err
	}
	w.undecodable++
	w.failures = append(w.failures, fmt.Sprintf("undecodable message kept as %s", name))
	return nil
}

func summarize(r *message.ProcessingRequest) pageSummary {
	s := pageSummary{
		UUID: r.GetUuid(), PageUUID: r.GetPageUuid(), Priority: r.GetPriority(),
		Status: "OK", Downloaded: time.Now().UTC(), Files: []string{},
	}
	if in := message.Input(r); in != nil {
		s.Input = in.GetName()
	}
	if r.GetStartTime() != nil {
		t := r.GetStartTime().AsTime()
		s.Submitted = &t
	}
	if message.Failed(r) {
		s.Status, s.Error, s.FailedStage = "FAILED", message.FailureText(r), r.GetFailedStage()
	}
	for _, l := range r.GetLogs() {
		ss := stageSummary{Stage: l.GetStage(), Host: l.GetHostId(), Status: l.GetStatus(), Attempt: l.GetAttempt(),
			Version: l.GetVersion(), Error: l.GetError(), Log: l.GetLog()}
		if l.GetEnqueued() != nil {
			t := l.GetEnqueued().AsTime()
			ss.Enqueued = &t
		}
		if l.GetStart() != nil {
			t := l.GetStart().AsTime()
			ss.Start = &t
		}
		if l.GetEnd() != nil {
			t := l.GetEnd().AsTime()
			ss.End = &t
		}
		if ss.Start != nil && ss.End != nil {
			ss.Seconds = ss.End.Sub(*ss.Start).Seconds()
		}
		if s.FailedStage == "" && l.GetStatus() == message.LogFailed {
			s.FailedStage = l.GetStage()
		}
		s.Stages = append(s.Stages, ss)
	}
	return s
}

// safeFileName keeps a result inside its page directory whatever name a stage gave it.
func safeFileName(name string, i int) string {
	base := filepath.Base(strings.ReplaceAll(name, "\\", "/"))
	if base == "." || base == ".." || base == "/" || base == "" || strings.HasPrefix(base, ".tmp-") {
		return fmt.Sprintf("result-%d", i)
	}
	return base
}

func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
