// Command benchocr measures the OCR function against tesseract on the
// evaluation corpus (function/ocr/eval: groups pages, lines, real-pages,
// real-lines): CER and WER per group and language, speed on one core and on
// all cores, and peak memory, for every tool in the same run. `make
// bench-ocr` runs it; see README.md for the table.
//
// Tools (-tools, default pero-latin, pero-latin-greedy, pp-ocrv4 and
// tesseract in this order;
// the table's columns follow it):
//
//   - pero-latin: `pero ocr` with the built-in config, i.e. the project's own
//     Latin-script recognizer (pero-latin-rec-int8.onnx, pero-latin.dict), or
//     with the model given by -latin-model (a retrained one);
//   - pero-latin-greedy: the same recognizer decoded greedily, without the
//     language model's beam search ([recognize] language_model = none), to
//     show what the language model does;
//   - pero-latin-float, only when named: the same with the float model the
//     integer one was quantised from (pero-latin-rec.onnx);
//   - pp-ocrv4: `pero ocr --config` with a config.ini, written to the work
//     directory, that selects PP-OCRv4's recognizer
//     (ch_PP-OCRv4_rec_infer.onnx, ppocr_keys_v1.txt);
//   - tesseract (skipped when the -tesseract flag is empty).
//
// The pero tools read the models directory <-models>/ocr (make models).
//
// The real scans: pero-latin was trained on the line crops of a few real
// pages, so those pages (-exclude, page ids) are never scored: their
// real-pages sample and their real-lines crops are dropped, and the groups
// are reported as "real-pages (held out)" and "real-lines (held out)". Their
// references are the modernised transcriptions (no long s), so on the real-*
// groups the long s 'ſ' is folded to 's' in every tool's output before
// scoring (eval.FoldLongS).
//
// Speed: images/s on one core and on all cores, and lines/s on one core:
// for page groups the number of reference lines (non-blank lines of each
// page's reference text) over the one-core wall time, so that per-page and
// per-line speed of all tools stand side by side. Each run is repeated
// (-repeat, default 3) and the fastest counts, for every tool alike: on a
// shared machine the same run varies by 10-20%. -limit N keeps the first N
// samples of each group for a quick run.
//
// Every tool runs as separate processes, one run per group and core count,
// so that start-up (model loading) and peak RSS are counted as a user sees
// them. On one core every process is pinned to one CPU (taskset, so that
// neither the Go runtime nor a helper thread borrows another core) and runs
// single-threaded; on all cores pero ocr runs one process with a worker per
// core and tesseract one process per core.
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
	"golang.org/x/sys/unix"
)

// The tools, in the default column order.
const (
	toolLatin       = "pero-latin"
	toolLatinGreedy = "pero-latin-greedy"
	toolLatinFloat  = "pero-latin-float" // not run unless named in -tools
	toolPPOCR       = "pp-ocrv4"
	toolTesseract   = "tesseract"
)

// latinFloatConfig selects the float export of pero-latin, which the
// default integer model was quantised from.
const latinFloatConfig = `[recognize]
model = pero-latin-rec.onnx
`

// latinGreedyConfig decodes pero-latin greedily, without its language model.
const latinGreedyConfig = `[recognize]
language_model = none
`

// ppocrConfig selects PP-OCRv4's recognizer; paths are relative to --models.
const ppocrConfig = `[recognize]
model = ch_PP-OCRv4_rec_infer.onnx
dictionary = ppocr_keys_v1.txt
`

// defaultExclude are the real pages whose line crops pero-latin was trained on.
const defaultExclude = "vd_bankgraf_0076,vd_bankgraf_0077,vd_borrdisc_0018,vd_borrdisc_0019,vd_fiscfrie_0014,vd_fiscfrie_0015"

type options struct {
	corpus, pero, models, tesseract, out, work string
	latinModel                                 string
	groups, tools, exclude                     []string
	cores, limit, repeat                       int
}

func main() {
	var (
		o                      options
		groups, tools, exclude string
	)
	flag.StringVar(&o.corpus, "corpus", "../shared/corpus/public", "corpus directory (public split layout)")
	flag.StringVar(&o.pero, "pero", "bin/pero", "pero binary built with cgo (make build)")
	flag.StringVar(&o.models, "models", "models", "models directory (make models); pero reads its ocr/ subdirectory")
	flag.StringVar(&groups, "groups", "pages,lines,real-pages,real-lines", "corpus groups to run")
	flag.StringVar(&tools, "tools", strings.Join([]string{toolLatin, toolLatinGreedy, toolPPOCR, toolTesseract}, ","), "tools to run, in column order: "+toolLatin+", "+toolLatinGreedy+" (decoded without the language model), "+toolLatinFloat+" (the float model), "+toolPPOCR+", "+toolTesseract)
	flag.StringVar(&exclude, "exclude", defaultExclude, "real page ids never scored (pero-latin was trained on their lines): dropped from real-pages and real-lines")
	flag.StringVar(&o.latinModel, "latin-model", "", "pero-latin reads with this recognizer model (a retrained one, say) instead of the shipped pero-latin-rec-int8.onnx; its dictionary stays pero-latin.dict")
	flag.IntVar(&o.limit, "limit", 0, "keep only the first N samples of each group (0: all)")
	flag.IntVar(&o.repeat, "repeat", 3, "runs per tool, group and core count; the speed is the fastest run's (machines with noisy neighbours vary by 10-20% run to run)")
	flag.IntVar(&o.cores, "cores", runtime.NumCPU(), "the 'all cores' setting")
	flag.StringVar(&o.tesseract, "tesseract", "tesseract", "tesseract binary; empty to skip the tesseract tool")
	flag.StringVar(&o.out, "out", "", "also write the report (markdown) to this file")
	flag.StringVar(&o.work, "work", "", "scratch directory (default: a temporary one)")
	flag.Parse()
	o.groups, o.tools, o.exclude = splitList(groups), splitList(tools), splitList(exclude)
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "benchocr:", err)
		os.Exit(1)
	}
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// measure is one timed run of a tool over a group.
type measure struct {
	n      int
	wall   time.Duration
	maxRSS int64 // KiB
	note   string
}

func (m measure) rate() float64 { return per(m.n, m.wall) }

func per(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

type result struct {
	counts map[string]*eval.Counts // by language
	speed  map[int]measure         // by core count
	split  measure                 // pero tools: one pinned process per core (runPeroSplit)
}

// group is one corpus group as run: its samples after -exclude and -limit.
type group struct {
	name     string
	samples  []eval.Sample
	lines    int // reference lines
	excluded int // samples dropped by -exclude
}

// label is the group's name in the report.
func (g group) label() string {
	if g.excluded > 0 {
		return g.name + " (held out)"
	}
	return g.name
}

func realGroup(name string) bool { return strings.HasPrefix(name, "real-") }

// selectGroups splits samples by group, drops the excluded pages from the
// real-* groups, keeps the first limit samples (0: all) and counts the
// reference lines. Groups without samples are left out.
func selectGroups(samples []eval.Sample, names, exclude []string, limit int) []group {
	ex := map[string]bool{}
	for _, id := range exclude {
		ex[id] = true
	}
	byGroup := map[string][]eval.Sample{}
	for _, s := range samples {
		byGroup[s.Group] = append(byGroup[s.Group], s)
	}
	var out []group
	for _, name := range names {
		g := group{name: name}
		for _, s := range byGroup[name] {
			if realGroup(name) && ex[s.PageID()] {
				g.excluded++
				continue
			}
			if limit > 0 && len(g.samples) >= limit {
				continue
			}
			g.samples = append(g.samples, s)
			g.lines += s.RefLines()
		}
		if len(g.samples) == 0 {
			fmt.Fprintf(os.Stderr, "benchocr: no samples in group %q, skipped\n", name)
			continue
		}
		out = append(out, g)
	}
	return out
}

func run(o options) error {
	if len(o.tools) == 0 {
		return errors.New("no tools (-tools)")
	}
	var tools []string
	seen := map[string]bool{}
	for _, t := range o.tools {
		switch t {
		case toolLatin, toolLatinGreedy, toolLatinFloat, toolPPOCR:
		case toolTesseract:
			if o.tesseract == "" {
				fmt.Fprintln(os.Stderr, "benchocr: -tesseract '': tesseract skipped")
				continue
			}
			if _, err := exec.LookPath(o.tesseract); err != nil {
				return fmt.Errorf("tesseract not found (%v); install tesseract-ocr, pass -tesseract '' or leave it out of -tools", err)
			}
		default:
			return fmt.Errorf("unknown tool %q in -tools (known: %s, %s, %s, %s, %s)", t, toolLatin, toolLatinGreedy, toolLatinFloat, toolPPOCR, toolTesseract)
		}
		if !seen[t] {
			seen[t] = true
			tools = append(tools, t)
		}
	}
	if len(tools) == 0 {
		return errors.New("no tools left to run")
	}
	samples, err := eval.Load(o.corpus)
	if err != nil {
		return err
	}
	work := o.work
	if work == "" {
		if work, err = os.MkdirTemp("", "benchocr"); err != nil {
			return err
		}
		defer os.RemoveAll(work)
	} else if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	if work, err = filepath.Abs(work); err != nil {
		return err
	}
	configs := map[string]string{} // pero tool -> --config file ("" = built-in)
	inis := map[string]string{toolPPOCR: ppocrConfig, toolLatinFloat: latinFloatConfig, toolLatinGreedy: latinGreedyConfig}
	if o.latinModel != "" {
		abs, err := filepath.Abs(o.latinModel)
		if err != nil {
			return err
		}
		if _, err := os.Stat(abs); err != nil {
			return fmt.Errorf("-latin-model: %w", err)
		}
		inis[toolLatin] = "[recognize]\nmodel = " + abs + "\n"
		inis[toolLatinGreedy] = inis[toolLatin] + "language_model = none\n"
	}
	for tool, ini := range inis {
		if !seen[tool] {
			continue
		}
		configs[tool] = filepath.Join(work, tool+".ini")
		if err := os.WriteFile(configs[tool], []byte(ini), 0o644); err != nil {
			return err
		}
	}
	groups := selectGroups(samples, o.groups, o.exclude, o.limit)
	if len(groups) == 0 {
		return fmt.Errorf("no samples in groups %s", strings.Join(o.groups, ","))
	}
	coreSet := []int{1}
	if o.cores > 1 {
		coreSet = append(coreSet, o.cores)
	}
	results := map[string]map[string]*result{} // tool -> group
	var stats []string
	ctx := context.Background()
	for _, tool := range tools {
		results[tool] = map[string]*result{}
		for _, g := range groups {
			ss := g.samples
			res := &result{counts: map[string]*eval.Counts{}, speed: map[int]measure{}}
			results[tool][g.name] = res
			for _, c := range coreSet {
				var st1 string // pero's stats of the fastest one-core run
				dir := filepath.Join(work, tool, g.name, fmt.Sprint(c))
				if err := os.MkdirAll(dir, 0o755); err != nil {
					return err
				}
				var m measure
				for rep := range max(o.repeat, 1) {
					var (
						r  measure
						st string
					)
					switch tool {
					case toolTesseract:
						r, err = runTesseract(ctx, o.tesseract, ss, c, dir)
					default:
						r, st, err = runPero(ctx, o.pero, o.models, configs[tool], ss, g.name, c, dir)
					}
					if err != nil {
						return fmt.Errorf("%s on %s with %d cores: %w", tool, g.name, c, err)
					}
					if rep == 0 || r.wall < m.wall {
						r.maxRSS = max(r.maxRSS, m.maxRSS)
						m = r
						if c == 1 {
							st1 = st
						}
					} else {
						m.maxRSS = max(m.maxRSS, r.maxRSS)
					}
				}
				if c == 1 && st1 != "" {
					stats = append(stats, fmt.Sprintf("%s, %s: %s", tool, g.label(), st1))
				}
				if c > 1 && tool != toolTesseract {
					sdir := filepath.Join(work, tool, g.name, fmt.Sprintf("%d-split", c))
					if err := os.MkdirAll(sdir, 0o755); err != nil {
						return err
					}
					for rep := range max(o.repeat, 1) {
						r, err := runPeroSplit(ctx, o.pero, o.models, configs[tool], ss, g.name, c, sdir)
						if err != nil {
							return fmt.Errorf("%s on %s as %d processes: %w", tool, g.name, c, err)
						}
						if rep == 0 || r.wall < res.split.wall {
							res.split = r
						}
					}
				}
				res.speed[c] = m
				fmt.Fprintf(os.Stderr, "benchocr: %-10s %-10s %d core(s): %d in %s (%.2f/s), peak RSS %d MiB %s\n",
					tool, g.name, c, m.n, m.wall.Round(time.Millisecond), m.rate(), m.maxRSS/1024, m.note)
				if c != 1 {
					continue
				}
				for _, s := range ss {
					hyp, err := os.ReadFile(filepath.Join(dir, s.ID+".txt"))
					if err != nil && !errors.Is(err, os.ErrNotExist) {
						return err
					}
					h := string(hyp)
					if realGroup(g.name) {
						h = eval.FoldLongS(h)
					}
					cnt := res.counts[s.Lang]
					if cnt == nil {
						cnt = &eval.Counts{}
						res.counts[s.Lang] = cnt
					}
					cnt.Add(eval.Compare(s.Ref, h))
				}
			}
		}
	}
	var b bytes.Buffer
	report(&b, results, tools, groups, coreSet, stats, o)
	os.Stdout.Write(b.Bytes())
	if o.out != "" {
		return os.WriteFile(o.out, b.Bytes(), 0o644)
	}
	return nil
}

func report(w io.Writer, results map[string]map[string]*result, tools []string, groups []group, coreSet []int, stats []string, o options) {
	fmt.Fprintf(w, "OCR benchmark on %d CPU(s) (%s), %s\n\n", runtime.NumCPU(), cpuModel(), time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintf(w, "Tools: %s.\n", strings.Join(tools, ", "))
	if o.latinModel != "" {
		fmt.Fprintf(w, "%s reads with %s (-latin-model), not the shipped model.\n", toolLatin, o.latinModel)
	}
	hasReal, excluded := false, 0
	for _, g := range groups {
		if realGroup(g.name) {
			hasReal = true
			excluded += g.excluded
		}
	}
	if excluded > 0 {
		fmt.Fprintf(w, "Held out: real pages %s are excluded from real-pages and real-lines (%d samples dropped): %s was trained on their line crops.\n",
			strings.Join(o.exclude, ", "), excluded, toolLatin)
	}
	if hasReal {
		fmt.Fprintln(w, "Long s: on the real-* groups 'ſ' is folded to 's' in every tool's output before scoring (the references are modernised transcriptions).")
	}
	if o.repeat > 1 {
		fmt.Fprintf(w, "Speed: the fastest of %d runs of each tool, group and core count.\n", o.repeat)
	}
	if o.limit > 0 {
		fmt.Fprintf(w, "Quick run: only the first %d samples of each group (-limit %d).\n", o.limit, o.limit)
	}
	fmt.Fprintln(w)
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
			if r := results[t][g.name]; r != nil {
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
			fmt.Fprintf(w, "| %s | %s |", g.label(), l)
			for _, t := range tools {
				r := results[t][g.name]
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
	fmt.Fprintln(w, "Speed (images/s on 1 and all cores; lines/s on 1 core, from the reference line count; start-up included; the one-core runs pinned to one CPU) and peak RSS (MiB, largest process):")
	fmt.Fprintln(w)
	fmt.Fprint(w, "| group | images | lines |")
	for _, t := range tools {
		for _, c := range coreSet {
			fmt.Fprintf(w, " %s %d core(s) |", t, c)
		}
		fmt.Fprintf(w, " %s lines/s (1 core) | %s RSS |", t, t)
	}
	fmt.Fprint(w, "\n|---|---:|---:|")
	for range tools {
		for range coreSet {
			fmt.Fprint(w, "---:|")
		}
		fmt.Fprint(w, "---:|---:|")
	}
	fmt.Fprintln(w)
	for _, g := range groups {
		fmt.Fprintf(w, "| %s | %d | %d |", g.label(), len(g.samples), g.lines)
		for _, t := range tools {
			r := results[t][g.name]
			if r == nil {
				fmt.Fprint(w, strings.Repeat(" - |", len(coreSet)+2))
				continue
			}
			var rss int64
			for _, c := range coreSet {
				fmt.Fprintf(w, " %.2f |", r.speed[c].rate())
				rss = max(rss, r.speed[c].maxRSS)
			}
			fmt.Fprintf(w, " %.2f | %d |", per(g.lines, r.speed[1].wall), rss/1024)
		}
		fmt.Fprintln(w)
	}
	if len(coreSet) > 1 {
		n := coreSet[len(coreSet)-1]
		fmt.Fprintln(w)
		fmt.Fprintf(w, "Scaling on %d cores (images/s against one core). For pero, beside the one process with a worker per core, %d independent one-core processes, each pinned to its own CPU with 1/%d of the images: the machine's own ceiling, where nothing is shared but caches, memory and the host:\n", n, n, n)
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| group | tool | one process | independent processes |")
		fmt.Fprintln(w, "|---|---|---:|---:|")
		for _, g := range groups {
			for _, t := range tools {
				r := results[t][g.name]
				if r == nil || r.speed[1].rate() == 0 {
					continue
				}
				one := r.speed[1].rate()
				split := "-"
				if r.split.wall > 0 {
					split = fmt.Sprintf("%.2fx", r.split.rate()/one)
				}
				fmt.Fprintf(w, "| %s | %s | %.2fx | %s |\n", g.label(), t, r.speed[n].rate()/one, split)
			}
		}
	}
	if len(stats) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Where pero's time went (one core), per pero tool and group:")
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

// peroArgs are the arguments of pero ocr over paths with the given
// workers and config (empty: the built-in one, i.e. pero-latin).
func peroArgs(models, config, group, dir string, workers int, paths []string) []string {
	args := []string{"ocr", "--stats", "--format", "txt", "--out", dir, "--models", filepath.Join(models, "ocr"),
		"--ort-lib", filepath.Join(models, "onnxruntime", "libonnxruntime.so.1"), "--workers", fmt.Sprint(workers), "--threads", "1"}
	if config != "" {
		args = append(args, "--config", config)
	}
	if strings.HasSuffix(group, "lines") {
		args = append(args, "--lines")
	}
	return append(args, paths...)
}

// runPero runs pero ocr once over the group with config (empty: the
// built-in one, i.e. pero-latin).
func runPero(ctx context.Context, pero, models, config string, ss []eval.Sample, group string, cores int, dir string) (measure, string, error) {
	paths, err := links(ss, dir)
	if err != nil {
		return measure{}, "", err
	}
	cmd := pinned(ctx, cores, pero, peroArgs(models, config, group, dir, cores, paths)...)
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

// runPeroSplit runs the group as cores independent one-core pero ocr
// processes, each pinned to its own CPU with every cores-th image: what
// the machine gives for cores times the one-core work when nothing is
// shared but the hardware (caches, memory, the host). Against it, the
// scaling of one process with a worker per core shows what the process
// itself loses.
func runPeroSplit(ctx context.Context, pero, models, config string, ss []eval.Sample, group string, cores int, dir string) (measure, error) {
	paths, err := links(ss, dir)
	if err != nil {
		return measure{}, err
	}
	parts := make([][]string, cores)
	for i, p := range paths {
		parts[i%cores] = append(parts[i%cores], p)
	}
	var cmds []*exec.Cmd
	for i, part := range parts {
		if len(part) == 0 {
			continue
		}
		cmd := pinnedTo(ctx, i, pero, peroArgs(models, config, group, dir, 1, part)...)
		cmd.Stderr = io.Discard
		cmds = append(cmds, cmd)
	}
	start := time.Now()
	for _, cmd := range cmds {
		if err := cmd.Start(); err != nil {
			return measure{}, err
		}
	}
	m := measure{n: len(paths)}
	var errs []error
	for _, cmd := range cmds {
		err := cmd.Wait()
		var ee *exec.ExitError
		if err != nil && (!errors.As(err, &ee) || ee.ExitCode() != 1) {
			errs = append(errs, err)
		}
		m.maxRSS = max(m.maxRSS, maxRSS(cmd.ProcessState))
	}
	m.wall = time.Since(start)
	return m, errors.Join(errs...)
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
				cmd := pinned(ctx, cores, tess, args...)
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

// pinned returns the command that runs name with args, on a single CPU
// when cores is 1 (the first CPU this process may run on).
func pinned(ctx context.Context, cores int, name string, args ...string) *exec.Cmd {
	if cores != 1 {
		return exec.CommandContext(ctx, name, args...)
	}
	return pinnedTo(ctx, 0, name, args...)
}

// pinnedTo returns the command that runs name with args on the i-th CPU
// this process may run on, through taskset. Without taskset it runs
// unpinned and says so once.
func pinnedTo(ctx context.Context, i int, name string, args ...string) *exec.Cmd {
	pinOnce.Do(func() {
		var err error
		if taskset, err = exec.LookPath("taskset"); err != nil {
			fmt.Fprintln(os.Stderr, "benchocr: taskset not found (util-linux): one-core runs are not pinned to one CPU")
			return
		}
		var set unix.CPUSet
		if err := unix.SchedGetaffinity(0, &set); err != nil {
			fmt.Fprintf(os.Stderr, "benchocr: %v: one-core runs are not pinned to one CPU\n", err)
			return
		}
		for cpu := range 1024 {
			if set.IsSet(cpu) {
				cpus = append(cpus, cpu)
			}
		}
	})
	if len(cpus) == 0 {
		return exec.CommandContext(ctx, name, args...)
	}
	return exec.CommandContext(ctx, taskset, append([]string{"-c", fmt.Sprint(cpus[i%len(cpus)]), name}, args...)...)
}

var (
	pinOnce sync.Once
	taskset string
	cpus    []int // the CPUs this process may run on
)

func maxRSS(ps *os.ProcessState) int64 {
	if ps == nil {
		return 0
	}
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss // KiB on Linux
	}
	return 0
}
