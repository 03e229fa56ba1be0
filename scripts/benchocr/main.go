// Command benchocr measures the OCR function against tesseract on the
// evaluation corpus: CER and WER per corpus group and language, pages per
// second on one core and on all cores, and peak memory, for both tools in
// the same run. `make bench-ocr` runs it; see README.md for the table.
//
// Both tools run as separate processes, one run per group and core count,
// so that start-up (model loading) and peak RSS are counted as a user sees
// them. On one core both run single-threaded; on all cores pero ocr runs
// one process with a worker per core and tesseract one process per core.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pero-worker/pero-worker/function/ocr/eval"
)

func main() {
	var (
		corpus    = flag.String("corpus", "../shared/corpus/public", "corpus directory (public split layout)")
		pero      = flag.String("pero", "bin/pero", "pero binary built with cgo (make build)")
		models    = flag.String("models", "models", "models directory (make models)")
		groups    = flag.String("groups", "pages,lines,real-pages,real-lines", "corpus groups to run")
		cores     = flag.Int("cores", runtime.NumCPU(), "the 'all cores' setting")
		tesseract = flag.String("tesseract", "tesseract", "tesseract binary; empty to skip")
		out       = flag.String("out", "", "also write the report (markdown) to this file")
		work      = flag.String("work", "", "scratch directory (default: a temporary one)")
	)
	flag.Parse()
	if err := run(*corpus, *pero, *models, *groups, *cores, *tesseract, *out, *work); err != nil {
		fmt.Fprintln(os.Stderr, "benchocr:", err)
		os.Exit(1)
	}
}

// measure is one timed run of a tool over a group.
type measure struct {
	n      int
	wall   time.Duration
	maxRSS int64 // KiB
	note   string
}

func (m measure) rate() float64 {
	if m.wall <= 0 {
		return 0
	}
	return float64(m.n) / m.wall.Seconds()
}

type result struct {
	counts map[string]*eval.Counts // by language
	speed  map[int]measure         // by core count
}

func run(corpus, pero, models, groupList string, cores int, tess, outPath, work string) error {
	samples, err := eval.Load(corpus)
	if err != nil {
		return err
	}
	if work == "" {
		if work, err = os.MkdirTemp("", "benchocr"); err != nil {
			return err
		}
		defer os.RemoveAll(work)
	}
	byGroup := map[string][]eval.Sample{}
	for _, s := range samples {
		byGroup[s.Group] = append(byGroup[s.Group], s)
	}
	groups := strings.Split(groupList, ",")
	coreSet := []int{1}
	if cores > 1 {
		coreSet = append(coreSet, cores)
	}
	tools := []string{"pero"}
	if tess != "" {
		if _, err := exec.LookPath(tess); err != nil {
			return fmt.Errorf("tesseract not found (%v); install tesseract-ocr or pass -tesseract ''", err)
		}
		tools = append(tools, "tesseract")
	}
	results := map[string]map[string]*result{} // tool -> group
	var stats []string
	ctx := context.Background()
	for _, tool := range tools {
		results[tool] = map[string]*result{}
		for _, g := range groups {
			ss := byGroup[g]
			if len(ss) == 0 {
				continue
			}
			res := &result{counts: map[string]*eval.Counts{}, speed: map[int]measure{}}
			results[tool][g] = res
			for _, c := range coreSet {
				dir := filepath.Join(work, tool, g, fmt.Sprint(c))
				if err := os.MkdirAll(dir, 0o755); err != nil {
					return err
				}
				var m measure
				switch tool {
				case "pero":
					var st string
					m, st, err = runPero(ctx, pero, models, ss, g, c, dir)
					if c == 1 && st != "" {
						stats = append(stats, fmt.Sprintf("%s: %s", g, st))
					}
				default:
					m, err = runTesseract(ctx, tess, ss, c, dir)
				}
				if err != nil {
					return fmt.Errorf("%s on %s with %d cores: %w", tool, g, c, err)
				}
				res.speed[c] = m
				fmt.Fprintf(os.Stderr, "benchocr: %-9s %-10s %d core(s): %d in %s (%.2f/s), peak RSS %d MiB %s\n",
					tool, g, c, m.n, m.wall.Round(time.Millisecond), m.rate(), m.maxRSS/1024, m.note)
				if c != 1 {
					continue
				}
				for _, s := range ss {
					hyp, err := os.ReadFile(filepath.Join(dir, s.ID+".txt"))
					if err != nil && !errors.Is(err, os.ErrNotExist) {
						return err
					}
					cnt := res.counts[s.Lang]
					if cnt == nil {
						cnt = &eval.Counts{}
						res.counts[s.Lang] = cnt
					}
					cnt.Add(eval.Compare(s.Ref, string(hyp)))
				}
			}
		}
	}
	var b bytes.Buffer
	report(&b, results, tools, groups, coreSet, stats)
	os.Stdout.Write(b.Bytes())
	if outPath != "" {
		return os.WriteFile(outPath, b.Bytes(), 0o644)
	}
	return nil
}

func report(w io.Writer, results map[string]map[string]*result, tools, groups []string, coreSet []int, stats []string) {
	fmt.Fprintf(w, "OCR benchmark on %d CPU(s) (%s), %s\n\n", runtime.NumCPU(), cpuModel(), time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintln(w, "Accuracy (CER / WER, %):")
	fmt.Fprintln(w)
	fmt.Fprint(w, "| group | lang |")
	for _, t := range tools {
		fmt.Fprintf(w, " %s CER | %s WER |", t, t)
	}
	fmt.Fprint(w, "\n|---|---|")
	for range tools {
		fmt.Fprint(w, "---:|---:|")
	}
	fmt.Fprintln(w)
	for _, g := range groups {
		langs := map[string]bool{}
		for _, t := range tools {
			if r := results[t][g]; r != nil {
				for l := range r.counts {
					langs[l] = true
				}
			}
		}
		ls := make([]string, 0, len(langs))
		for l := range langs {
			ls = append(ls, l)
		}
		sort.Strings(ls)
		ls = append(ls, "all")
		for _, l := range ls {
			fmt.Fprintf(w, "| %s | %s |", g, l)
			for _, t := range tools {
				r := results[t][g]
				if r == nil {
					fmt.Fprint(w, " - | - |")
					continue
				}
				var c eval.Counts
				if l == "all" {
					for _, x := range r.counts {
						c.Add(*x)
					}
				} else if x := r.counts[l]; x != nil {
					c = *x
				}
				fmt.Fprintf(w, " %.2f | %.2f |", 100*c.CER(), 100*c.WER())
			}
			fmt.Fprintln(w)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Speed (images/s, start-up included) and peak RSS (MiB, largest process):")
	fmt.Fprintln(w)
	fmt.Fprint(w, "| group | images |")
	for _, t := range tools {
		for _, c := range coreSet {
			fmt.Fprintf(w, " %s %d core(s) |", t, c)
		}
		fmt.Fprintf(w, " %s RSS |", t)
	}
	fmt.Fprint(w, "\n|---|---:|")
	for range tools {
		for range coreSet {
			fmt.Fprint(w, "---:|")
		}
		fmt.Fprint(w, "---:|")
	}
	fmt.Fprintln(w)
	for _, g := range groups {
		n := 0
		for _, t := range tools {
			if r := results[t][g]; r != nil {
				n = r.speed[1].n
			}
		}
		fmt.Fprintf(w, "| %s | %d |", g, n)
		for _, t := range tools {
			r := results[t][g]
			var rss int64
			for _, c := range coreSet {
				if r == nil {
					fmt.Fprint(w, " - |")
					continue
				}
				fmt.Fprintf(w, " %.2f |", r.speed[c].rate())
				rss = max(rss, r.speed[c].maxRSS)
			}
			fmt.Fprintf(w, " %d |", rss/1024)
		}
		fmt.Fprintln(w)
	}
	if len(stats) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Where pero's time went (one core):")
		fmt.Fprintln(w)
		for _, s := range stats {
			fmt.Fprintf(w, "- %s\n", s)
		}
	}
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "model name") {
			if _, v, ok := strings.Cut(l, ":"); ok {
				return strings.TrimSpace(v)
			}
		}
	}
	return runtime.GOARCH
}

// links puts the group's images under one directory by id, so that each
// tool writes <id>.txt whatever the image's name.
func links(ss []eval.Sample, dir string) ([]string, error) {
	in := filepath.Join(dir, "in")
	if err := os.MkdirAll(in, 0o755); err != nil {
		return nil, err
	}
	var paths []string
	for _, s := range ss {
		abs, err := filepath.Abs(s.Image)
		if err != nil {
			return nil, err
		}
		p := filepath.Join(in, s.ID+filepath.Ext(s.Image))
		if err := os.Symlink(abs, p); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, err
		}
		paths = append(paths, p)
	}
	return paths, nil
}

func runPero(ctx context.Context, pero, models string, ss []eval.Sample, group string, cores int, dir string) (measure, string, error) {
	paths, err := links(ss, dir)
	if err != nil {
		return measure{}, "", err
	}
	args := []string{"ocr", "--stats", "--format", "txt", "--out", dir, "--models", filepath.Join(models, "pp-ocrv4"),
		"--ort-lib", filepath.Join(models, "onnxruntime", "libonnxruntime.so.1"), "--workers", fmt.Sprint(cores), "--threads", "1"}
	if strings.HasSuffix(group, "lines") {
		args = append(args, "--lines")
	}
	args = append(args, paths...)
	cmd := exec.CommandContext(ctx, pero, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	err = cmd.Run()
	wall := time.Since(start)
	m := measure{n: len(paths), wall: wall, maxRSS: maxRSS(cmd.ProcessState)}
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			return m, "", fmt.Errorf("%v\n%s", err, stderr.String())
		}
		m.note = "(some images failed)"
	}
	st := ""
	for _, l := range strings.Split(stderr.String(), "\n") {
		if _, v, ok := strings.Cut(l, "stats: "); ok {
			st = v
		}
	}
	return m, st, nil
}

func runTesseract(ctx context.Context, tess string, ss []eval.Sample, cores int, dir string) (measure, error) {
	paths, err := links(ss, dir)
	if err != nil {
		return measure{}, err
	}
	type job struct {
		path string
		s    eval.Sample
	}
	jobs := make(chan job)
	var (
		mu     sync.Mutex
		peak   int64
		failed int
		wg     sync.WaitGroup
	)
	start := time.Now()
	for range cores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				args := []string{j.path, filepath.Join(dir, j.s.ID), "-l", eval.TesseractLang(j.s.Lang)}
				if j.s.Line() {
					args = append(args, "--psm", "7")
				}
				cmd := exec.CommandContext(ctx, tess, args...)
				cmd.Env = append(os.Environ(), "OMP_THREAD_LIMIT=1")
				err := cmd.Run()
				mu.Lock()
				peak = max(peak, maxRSS(cmd.ProcessState))
				if err != nil {
					failed++
				}
				mu.Unlock()
			}
		}()
	}
	for i, p := range paths {
		jobs <- job{p, ss[i]}
	}
	close(jobs)
	wg.Wait()
	m := measure{n: len(paths), wall: time.Since(start), maxRSS: peak}
	if failed > 0 {
		m.note = fmt.Sprintf("(%d failed)", failed)
	}
	return m, nil
}

func maxRSS(ps *os.ProcessState) int64 {
	if ps == nil {
		return 0
	}
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss // KiB on Linux
	}
	return 0
}
