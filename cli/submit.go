package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg" // registered decoders for the header check
	_ "image/png"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	_ "golang.org/x/image/tiff"

	"github.com/pero-worker/pero-worker/internal/message"
	"github.com/pero-worker/pero-worker/internal/rabbitmq"
	"github.com/pero-worker/pero-worker/internal/zookeeper"
)

// maxImageBytes keeps a page well under RabbitMQ's default 128 MiB message limit.
const maxImageBytes = 100 << 20

var imageExts = map[string]bool{".png": true, ".jpg": true, ".jpeg": true, ".tif": true, ".tiff": true}

func submitCommand() *Command {
	return &Command{
		Name:    "submit",
		Summary: "Submit page images (PNG, JPEG, TIFF) to a chain of stages",
		Run:     runSubmit,
	}
}

const submitHelp = `Submit one message per image to the first of the given stages. The last stage is
the output queue where results collect for ` + "`pero download`" + `. Every file is checked
before anything is published; bad files are listed and nothing is sent.

Stages may be given as --stages detect,recognize,out, repeated --stages flags or
--stages detect recognize out FILE...: the words after --stages are stages as long as
ZooKeeper knows a stage of that name; the first other word that names a file or directory
starts the files. The route must end with an output stage.
Directories are searched recursively for .png, .jpg, .jpeg, .tif and .tiff files.

Standard output gets one line per page: UUID<TAB>FILE, for matching results to files.

Example:
  pero submit --stages ocr out scans/`

func runSubmit(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "submit", "submit --stages S1 [S2...] OUT [flags] FILE|DIR...", submitHelp)
	cf := addConnFlags(fs, env)
	stages := fs.StringSlice("stages", nil, "stages in processing order, ending with the output stage")
	// The words that followed --stages without commas; resolved against ZooKeeper below.
	words := fs.StringSlice(stageWordsFlag, nil, "")
	_ = fs.MarkHidden(stageWordsFlag)
	priority := fs.Int32("priority", 0, "message priority: 0 or 1 (stage queues have two priority levels)")
	dryRun := fs.Bool("dry-run", false, "check files and stages, publish nothing")
	if err := parse(fs, expandStageArgs(args)); err != nil {
		return err
	}
	if len(*stages) == 0 && len(*words) == 0 {
		return usageErr("--stages: give at least one stage, ending with the output stage")
	}
	if *priority < 0 || *priority > 1 {
		return usageErr("--priority must be 0 or 1")
	}
	for _, s := range *stages {
		if err := checkStageName(s); err != nil {
			return err
		}
	}

	st, err := cf.openZK(ctx, env)
	if err != nil {
		return err
	}
	defer st.Close()
	known := func(name string) (zookeeper.Stage, bool, error) {
		s, err := st.GetStage(ctx, name)
		if errors.Is(err, zookeeper.ErrNotFound) {
			return s, false, nil
		}
		return s, err == nil, err
	}
	for _, s := range *stages {
		if _, ok, err := known(s); err != nil {
			return unavailable(err, "")
		} else if !ok {
			return failed(fmt.Errorf("unknown stage %q", s), "see `pero stage list`, or create it with `pero stage create`")
		}
	}
	// "--stages a b c FILE...": the words are stages while ZooKeeper knows them; the first
	// other word that names a file or directory starts the files.
	paths := fs.Args()
	for i, w := range *words {
		_, ok, err := known(w)
		if err != nil {
			return unavailable(err, "")
		}
		if ok {
			*stages = append(*stages, w)
			continue
		}
		if _, err := os.Stat(w); err == nil && len(*stages) > 0 {
			paths = append(append([]string{}, (*words)[i:]...), paths...)
			break
		}
		return failed(fmt.Errorf("unknown stage %q", w), "see `pero stage list`, or create it with `pero stage create`")
	}
	if len(*stages) == 0 {
		return usageErr("--stages: give at least one stage, ending with the output stage")
	}
	last := (*stages)[len(*stages)-1]
	if ls, _, _ := known(last); ls.Settings.Image != "" && !ls.Settings.Output {
		return failed(fmt.Errorf("the route ends at %q, a processing stage: its results would have nowhere to go", last),
			"end the route with an output stage (pero stage create out --output)")
	}
	if len(paths) == 0 {
		return usageErr("no files given")
	}
	files, bad := collectImages(paths)
	if len(bad) > 0 {
		for _, b := range bad {
			fmt.Fprintf(env.Stderr, "  %s\n", b)
		}
		return failed(fmt.Errorf("%d of %d files cannot be submitted; nothing was published", len(bad), len(bad)+len(files)),
			"fix or remove the files listed above")
	}
	if len(files) == 0 {
		return usageErr("no images found in %s", strings.Join(paths, " "))
	}
	route := strings.Join(*stages, " -> ")
	if *dryRun {
		fmt.Fprintf(env.Stderr, "dry run: %d pages would go %s\n", len(files), route)
		return nil
	}
	mq, err := cf.openMQ(ctx, env, st)
	if err != nil {
		return err
	}
	defer mq.Close()
	if _, err := mq.Inspect(ctx, (*stages)[0]); errors.Is(err, rabbitmq.ErrQueueNotFound) {
		return failed(fmt.Errorf("queue %q does not exist on the broker", (*stages)[0]), "re-create the stage: pero stage update "+(*stages)[0])
	}
	pub, err := mq.NewPublisher()
	if err != nil {
		return unavailable(err, "")
	}
	defer pub.Close()

	bar := newProgress(env.Stderr, int64(len(files)), "submitting")
	start := time.Now()
	const chunk = 32
	sent := 0
	for i := 0; i < len(files); i += chunk {
		part := files[i:min(i+chunk, len(files))]
		out := make([]rabbitmq.Outgoing, 0, len(part))
		ids := make([]string, 0, len(part))
		for _, path := range part {
			body, id, err := buildRequest(path, *stages, *priority)
			if err != nil {
				bar.Finish()
				return failed(fmt.Errorf("%s: %w (%d pages were published before it)", path, err, sent), "")
			}
			out = append(out, rabbitmq.Outgoing{Queue: (*stages)[0], Msg: rabbitmq.Message{
				Body: body, Priority: uint8(*priority), MessageID: id,
			}})
			ids = append(ids, id)
		}
		for j, err := range pub.PublishBatch(ctx, out) {
			if err != nil {
				bar.Finish()
				return failed(fmt.Errorf("publish %s: %w (%d pages were published before it)", part[j], err, sent), "")
			}
			fmt.Fprintf(env.Stdout, "%s\t%s\n", ids[j], part[j])
			sent++
		}
		bar.Add(len(part))
	}
	bar.Finish()
	fmt.Fprintf(env.Stderr, "submitted %d pages %s in %.1fs\n", sent, route, time.Since(start).Seconds())
	return nil
}

func buildRequest(path string, stages []string, priority int32) ([]byte, string, error) {
	img, err := os.ReadFile(path)
	if err != nil {
		return nil, "", err
	}
	req, err := message.NewRequest(filepath.Base(path), img, stages, priority, time.Now())
	if err != nil {
		return nil, "", err
	}
	body, err := message.Encode(req)
	return body, req.Uuid, err
}

// stageWordsFlag carries the words written after --stages without commas.
const stageWordsFlag = "stage-words"

// expandStageArgs turns "--stages a b c FILE" into "--stage-words=a,b,c,FILE": every word
// after --stages up to the next flag that could be a stage name. Which of them are stages
// and which are files is decided against ZooKeeper (an output stage called "out" and a
// directory called "out" are both common). "--stages=a,b" and "--stages a,b" keep their meaning.
func expandStageArgs(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a != "--stages" && a != "-s" {
			out = append(out, a)
			if a == "--" {
				out = append(out, args[i+1:]...)
				break
			}
			continue
		}
		if i+1 < len(args) && strings.Contains(args[i+1], ",") {
			out = append(out, a) // a comma list: the flag parser takes it as it is
			continue
		}
		var names []string
		for i+1 < len(args) {
			next := args[i+1]
			if strings.HasPrefix(next, "-") || !stageNameRE.MatchString(next) {
				break
			}
			names = append(names, next)
			i++
		}
		if len(names) == 0 {
			out = append(out, a) // let the flag parser report the missing value
			continue
		}
		out = append(out, "--"+stageWordsFlag+"="+strings.Join(names, ","))
	}
	return out
}

// collectImages expands directories and checks every file: readable, within the size
// limit, and an image whose header PNG, JPEG or TIFF decoders accept.
func collectImages(args []string) (files, bad []string) {
	seen := map[string]bool{}
	add := func(path string) {
		if seen[path] {
			return
		}
		seen[path] = true
		if err := checkImage(path); err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", path, err))
			return
		}
		files = append(files, path)
	}
	for _, arg := range args {
		info, err := os.Stat(arg)
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", arg, errors.Unwrap(err)))
			continue
		}
		if !info.IsDir() {
			add(arg)
			continue
		}
		var found []string
		err = filepath.WalkDir(arg, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				bad = append(bad, fmt.Sprintf("%s: %v", p, err))
				return nil
			}
			if !d.IsDir() && imageExts[strings.ToLower(filepath.Ext(p))] {
				found = append(found, p)
			}
			return nil
		})
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", arg, err))
		}
		sort.Strings(found)
		for _, p := range found {
			add(p)
		}
	}
	return files, bad
}

func checkImage(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return errors.Unwrap(err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	if info.Size() == 0 {
		return errors.New("empty file")
	}
	if info.Size() > maxImageBytes {
		return fmt.Errorf("%d MiB is above the %d MiB limit of one page", info.Size()>>20, maxImageBytes>>20)
	}
	head := make([]byte, 64<<10)
	n, _ := f.Read(head)
	cfg, format, err := image.DecodeConfig(bytes.NewReader(head[:n]))
	if err != nil && n == len(head) {
		// Some TIFFs keep their directory at the end; decode the header from the whole file.
		if _, serr := f.Seek(0, 0); serr == nil {
			cfg, format, err = image.DecodeConfig(f)
		}
	}
	if err != nil {
		return errors.New("not a PNG, JPEG or TIFF image")
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return fmt.Errorf("%s image has no pixels", format)
	}
	return nil
}
