package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/pero-worker/pero-worker/internal/rabbitmq"
	"github.com/pero-worker/pero-worker/internal/zookeeper"
)

// Stage names become queue names and znode names: keep them plain. Dots are reserved for
// the queues derived from a stage (its dead-letter queue is "<stage>.dead").
var stageNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,200}$`)

func checkStageName(name string) error {
	if !stageNameRE.MatchString(name) {
		return usageErr("stage name %q: use letters, digits, '-' and '_' (at most 200)", name)
	}
	return nil
}

func stageCommand() *Command {
	return &Command{
		Name:    "stage",
		Summary: "Create, update, list, show and delete processing stages",
		Run:     runStage,
	}
}

const stageHelp = `Manage processing stages. A stage is a RabbitMQ queue, its settings in ZooKeeper
(/pero/queue/<stage>/...) and, optionally, a model archive on the FTP server.

Subcommands:
  create NAME [flags]   create a stage: upload the model archive, write ZooKeeper, declare the queues
  update NAME [flags]   change the flags given (others keep their values); re-declares the queues
  list                  table of all stages
  show NAME             every setting of one stage
  delete NAME [--force] remove a stage; refuses while its queue holds messages unless --force

Examples:
  pero stage create out --output
  pero stage create ocr --image pero-function:latest --function ocr \
      --config ocr.ini --model-archive models.zip --batch-size 8 --max-containers 2
  pero stage update ocr --max-containers 4`

// stageFlags holds the settable stage fields; update applies only those the user gave.
type stageFlags struct {
	image, function, configFile, archive   string
	batchSize, minC, maxC, gpus, memoryMB  int
	maxBatches, maxDeliveries              int
	cpus                                   float64
	batchTimeout, idleTimeout, maxLifetime time.Duration
	priority                               uint64
	output, force                          bool
}

func addStageFlags(fs *pflag.FlagSet) *stageFlags {
	f := &stageFlags{}
	fs.StringVar(&f.image, "image", "", "container image of the stage's function")
	fs.StringVar(&f.function, "function", "", "function the runner calls: ocr, detect, recognize, noop, sleep (default ocr)")
	fs.StringVar(&f.configFile, "config", "", "stage config.ini file")
	fs.StringVar(&f.archive, "model-archive", "", "model archive (.zip or .tar.gz), or a directory to pack, uploaded to the FTP server")
	fs.IntVar(&f.batchSize, "batch-size", 8, "messages per batch")
	fs.IntVar(&f.minC, "min-containers", 0, "containers kept running even with an empty queue")
	fs.IntVar(&f.maxC, "max-containers", 1, "upper bound of containers for this stage")
	fs.IntVar(&f.gpus, "gpus", 0, "GPUs per container")
	fs.Float64Var(&f.cpus, "cpus", 0, "CPU limit per container (0 = none)")
	fs.IntVar(&f.memoryMB, "memory-mb", 0, "memory limit per container in MiB (0 = the watchdog's default, 8 GiB on Docker)")
	fs.DurationVar(&f.batchTimeout, "batch-timeout", 5*time.Minute, "time limit for one batch")
	fs.DurationVar(&f.idleTimeout, "idle-timeout", 30*time.Second, "a container exits after its queue stays empty this long")
	fs.DurationVar(&f.maxLifetime, "max-lifetime", time.Hour, "a container exits after this long")
	fs.IntVar(&f.maxBatches, "max-batches", 0, "a container exits after this many batches (0 = no limit)")
	fs.IntVar(&f.maxDeliveries, "max-deliveries", 3, "deliveries before a message goes to the dead-letter queue")
	fs.Uint64Var(&f.priority, "priority", 0, "administrative priority: higher stages get capacity first")
	fs.BoolVar(&f.output, "output", false, "an output stage: results collect here for `pero download`; no containers")
	return f
}

// apply copies the flags the user set onto the settings.
func (f *stageFlags) apply(fs *pflag.FlagSet, st *zookeeper.Stage) {
	s := &st.Settings
	set := func(name string, fn func()) {
		if fs.Changed(name) {
			fn()
		}
	}
	set("image", func() { s.Image = f.image })
	set("function", func() { s.Function = f.function })
	set("batch-size", func() { s.BatchSize = f.batchSize })
	set("min-containers", func() { s.MinContainers = f.minC })
	set("max-containers", func() { s.MaxContainers = f.maxC })
	set("gpus", func() { s.GPUs = f.gpus })
	set("cpus", func() { s.CPUs = f.cpus })
	set("memory-mb", func() { s.MemoryMB = f.memoryMB })
	set("batch-timeout", func() { s.BatchTimeout = zookeeper.Duration(f.batchTimeout) })
	set("idle-timeout", func() { s.IdleTimeout = zookeeper.Duration(f.idleTimeout) })
	set("max-lifetime", func() { s.MaxLifetime = zookeeper.Duration(f.maxLifetime) })
	set("max-batches", func() { s.MaxBatches = f.maxBatches })
	set("max-deliveries", func() { s.MaxDeliveries = f.maxDeliveries })
	set("output", func() { s.Output = f.output })
	set("priority", func() { st.AdministrativePriority = f.priority })
}

func runStage(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "stage", "stage create|update|list|show|delete [NAME] [flags]", stageHelp)
	cf := addConnFlags(fs, env)
	sf := addStageFlags(fs)
	fs.BoolVar(&sf.force, "force", false, "delete: remove the stage even if its queue holds messages (they are lost)")
	if err := parse(fs, args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return usageErr("missing subcommand: create, update, list, show or delete")
	}
	sub, rest := rest[0], rest[1:]
	needName := func() (string, error) {
		if len(rest) != 1 {
			return "", usageErr("usage: pero stage %s NAME", sub)
		}
		return rest[0], checkStageName(rest[0])
	}
	switch sub {
	case "create", "update":
		name, err := needName()
		if err != nil {
			return err
		}
		return stageWrite(ctx, env, cf, sf, fs, name, sub == "create")
	case "list":
		return stageList(ctx, env, cf)
	case "show":
		name, err := needName()
		if err != nil {
			return err
		}
		return stageShow(ctx, env, cf, name)
	case "delete":
		name, err := needName()
		if err != nil {
			return err
		}
		return stageDelete(ctx, env, cf, name, sf.force)
	default:
		return usageErr("unknown subcommand %q: use create, update, list, show or delete", sub)
	}
}

func stageWrite(ctx context.Context, env *Env, cf *connFlags, sf *stageFlags, fs *pflag.FlagSet, name string, create bool) error {
	var configText string
	if sf.configFile != "" {
		b, err := os.ReadFile(sf.configFile)
		if err != nil {
			return usageErr("--config: %v", err)
		}
		configText = string(b)
	}
	var archiveSum string
	if sf.archive != "" {
		if info, err := os.Stat(sf.archive); err == nil && info.IsDir() {
			packed, err := packDir(sf.archive)
			if err != nil {
				return failed(fmt.Errorf("--model-archive: pack %s: %w", sf.archive, err), "")
			}
			defer os.Remove(packed)
			sf.archive = packed
		}
		sum, err := fileSHA256(sf.archive)
		if err != nil {
			return usageErr("--model-archive: %v", err)
		}
		archiveSum = sum
	}
	// Validate the settings before touching any service.
	var draft zookeeper.Stage
	if create {
		draft = zookeeper.Stage{Name: name}
		sf.apply(fs, &draft)
		if !draft.Settings.Output && draft.Settings.Image == "" {
			return usageErr("--image is required for a processing stage (or --output for an output stage)")
		}
		if err := draft.Settings.WithDefaults().Validate(); err != nil {
			return usageErr("%v", err)
		}
	}

	st, err := cf.openZK(ctx, env)
	if err != nil {
		return err
	}
	defer st.Close()
	if create {
		if _, err := st.GetStage(ctx, name); err == nil {
			return failed(fmt.Errorf("stage %q already exists", name), "change it with `pero stage update "+name+" ...`")
		} else if !errors.Is(err, zookeeper.ErrNotFound) {
			return unavailable(err, "")
		}
	} else if _, err := st.GetStage(ctx, name); errors.Is(err, zookeeper.ErrNotFound) {
		return failed(fmt.Errorf("stage %q does not exist", name), "create it with `pero stage create "+name+" ...`")
	} else if err != nil {
		return unavailable(err, "")
	}
	// Connect to the broker before writing anything, so a failure leaves no half-made stage.
	mq, err := cf.openMQ(ctx, env, st)
	if err != nil {
		return err
	}
	defer mq.Close()

	var archivePath string
	if sf.archive != "" {
		ftp, err := cf.openFTP(ctx, env, st)
		if err != nil {
			return err
		}
		archivePath = fmt.Sprintf("models/%s/%s%s", name, archiveSum[:16], archiveExt(sf.archive))
		fmt.Fprintf(env.Stderr, "uploading %s to %s ...\n", sf.archive, archivePath)
		sum, size, err := ftp.UploadFile(ctx, archivePath, sf.archive)
		if err != nil {
			return unavailable(fmt.Errorf("upload model archive: %w", err), "check the FTP server and PERO_FTP_USER/PERO_FTP_PASSWORD")
		}
		if sum != archiveSum {
			return failed(fmt.Errorf("model archive changed during upload (sha256 %s, uploaded %s)", archiveSum, sum), "retry")
		}
		fmt.Fprintf(env.Stderr, "uploaded %d bytes, sha256 %s\n", size, sum)
	}
	if err := mq.DeclareStage(ctx, name); err != nil {
		return failed(fmt.Errorf("declare queues of %q: %w", name, err), "")
	}

	var saved zookeeper.Stage
	if create {
		draft.Config = configText
		draft.ConfigPath = archivePath
		draft.ModelSHA256 = archiveSum
		if err := st.CreateStage(ctx, draft); err != nil {
			if errors.Is(err, zookeeper.ErrExists) {
				return failed(fmt.Errorf("stage %q already exists", name), "")
			}
			return err
		}
		saved, err = st.GetStage(ctx, name)
	} else {
		saved, err = st.UpdateStage(ctx, name, func(s *zookeeper.Stage) error {
			sf.apply(fs, s)
			if sf.configFile != "" {
				s.Config = configText
			}
			if sf.archive != "" {
				s.ConfigPath, s.ModelSHA256 = archivePath, archiveSum
			}
			if !s.Settings.Output && s.Settings.Image == "" {
				return usageErr("--image is required for a processing stage")
			}
			return s.Settings.WithDefaults().Validate()
		})
	}
	if err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			return err
		}
		return failed(err, "")
	}
	verb := "created"
	if !create {
		verb = "updated"
	}
	fmt.Fprintf(env.Stdout, "%s stage %s (config version %s)\n", verb, name, saved.ConfigVersion)
	return nil
}

func archiveExt(path string) string {
	for _, ext := range []string{".tar.gz", ".tgz", ".tar", ".zip"} {
		if strings.HasSuffix(strings.ToLower(path), ext) {
			return ext
		}
	}
	return filepath.Ext(path)
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func stageList(ctx context.Context, env *Env, cf *connFlags) error {
	st, err := cf.openZK(ctx, env)
	if err != nil {
		return err
	}
	defer st.Close()
	names, err := st.ListStages(ctx)
	if err != nil {
		return unavailable(err, "")
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STAGE\tFUNCTION\tIMAGE\tBATCH\tMIN\tMAX\tGPUS\tPRIORITY\tSEC/MSG\tMODEL\tVERSION")
	for _, n := range names {
		s, err := st.GetStage(ctx, n)
		if err != nil {
			fmt.Fprintf(tw, "%s\t(error: %v)\n", n, err)
			continue
		}
		set := s.Settings.WithDefaults()
		fn, image := set.Function, set.Image
		if set.Output {
			fn, image = "(output)", "-"
		}
		model := "-"
		if s.ConfigPath != "" {
			model = s.ConfigPath
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%.3f\t%s\t%s\n", n, fn, image, set.BatchSize, set.MinContainers,
			set.MaxContainers, set.GPUs, s.AdministrativePriority, s.AvgMsgTime, model, s.ConfigVersion)
	}
	if len(names) == 0 {
		fmt.Fprintln(tw, "(no stages: create one with `pero stage create NAME ...`)")
	}
	return tw.Flush()
}

func stageShow(ctx context.Context, env *Env, cf *connFlags, name string) error {
	st, err := cf.openZK(ctx, env)
	if err != nil {
		return err
	}
	defer st.Close()
	s, err := st.GetStage(ctx, name)
	if errors.Is(err, zookeeper.ErrNotFound) {
		return failed(fmt.Errorf("stage %q does not exist", name), "see `pero stage list`")
	} else if err != nil {
		return unavailable(err, "")
	}
	set := s.Settings.WithDefaults()
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	rows := [][2]string{
		{"name", s.Name},
		{"output stage", strconv.FormatBool(set.Output)},
		{"function", set.Function},
		{"image", set.Image},
		{"batch size", strconv.Itoa(set.BatchSize)},
		{"containers", fmt.Sprintf("%d-%d", set.MinContainers, set.MaxContainers)},
		{"gpus", strconv.Itoa(set.GPUs)},
		{"cpus", strconv.FormatFloat(set.CPUs, 'f', -1, 64)},
		{"memory MiB", strconv.Itoa(set.MemoryMB)},
		{"batch timeout", time.Duration(set.BatchTimeout).String()},
		{"idle timeout", time.Duration(set.IdleTimeout).String()},
		{"max lifetime", time.Duration(set.MaxLifetime).String()},
		{"max batches", strconv.Itoa(set.MaxBatches)},
		{"max deliveries", strconv.Itoa(set.MaxDeliveries)},
		{"priority", strconv.FormatUint(s.AdministrativePriority, 10)},
		{"avg msg time", fmt.Sprintf("%.3fs", s.AvgMsgTime)},
		{"model archive", s.ConfigPath},
		{"model sha256", s.ModelSHA256},
		{"config version", s.ConfigVersion},
		{"dead-letter queue", rabbitmq.DeadLetterQueue(name)},
	}
	for _, r := range rows {
		fmt.Fprintf(tw, "%s:\t%s\n", r[0], r[1])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if s.Config != "" {
		fmt.Fprintf(env.Stdout, "config.ini:\n%s\n", strings.TrimRight(s.Config, "\n"))
	}
	return nil
}

func stageDelete(ctx context.Context, env *Env, cf *connFlags, name string, force bool) error {
	st, err := cf.openZK(ctx, env)
	if err != nil {
		return err
	}
	defer st.Close()
	if _, err := st.GetStage(ctx, name); errors.Is(err, zookeeper.ErrNotFound) {
		return failed(fmt.Errorf("stage %q does not exist", name), "see `pero stage list`")
	} else if err != nil {
		return unavailable(err, "")
	}
	mq, err := cf.openMQ(ctx, env, st)
	if err != nil {
		return err
	}
	defer mq.Close()
	for _, q := range []string{name, rabbitmq.DeadLetterQueue(name)} {
		info, err := mq.Inspect(ctx, q)
		if errors.Is(err, rabbitmq.ErrQueueNotFound) {
			continue
		}
		if err != nil {
			return unavailable(err, "")
		}
		if info.Ready > 0 && !force {
			return failed(fmt.Errorf("queue %s holds %d messages", q, info.Ready),
				"wait until it drains, or add --force to delete the stage and lose them")
		}
		if err := mq.DeleteQueue(ctx, q, false); err != nil {
			return failed(fmt.Errorf("delete queue %s: %w", q, err), "")
		}
	}
	if err := st.DeleteStage(ctx, name); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "deleted stage %s\n", name)
	return nil
}
