package main

import (
	"errors"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/pero-worker/pero-worker/watchdog"
)

// options are the watchdog's settings from flags and environment. parse fills them without
// reading any file: secrets are read later, from the variables the runner reads too.
type options struct {
	zookeeper      []string
	zkRoot         string
	sessionTimeout time.Duration
	connectTimeout time.Duration
	vhost          string

	id      string // "" = hostname and a random suffix, filled by main
	scope   string
	backend string

	poll        time.Duration
	targetDrain time.Duration
	aging       time.Duration
	quickExit   time.Duration
	backoffBase time.Duration
	backoffMax  time.Duration

	cpuSlots int // 0 = one per CPU, -1 = unlimited
	gpus     []string
	gpuShare int

	defaultImage  string
	allowedImages []string

	network       string
	cacheVolume   string
	cacheDir      string
	pidsLimit     int64
	stopTimeout   time.Duration
	runnerEnv     []string
	runnerSecrets map[string]string // secret name -> host path
	swarmGPUKind  string

	metricsAddr string
	logLevel    slog.Level
	logFormat   string
}

// runnerSecretVars maps the names --runner-secret takes to the runner's variable that names the
// mounted file.
var runnerSecretVars = map[string]string{
	"mq_password":  "PERO_MQ_PASSWORD_FILE",
	"ftp_password": "PERO_FTP_PASSWORD_FILE",
	"zk_auth":      "PERO_ZK_AUTH_FILE",
	"mq_ca":        "PERO_MQ_CA_FILE",
	"ftp_ca":       "PERO_FTP_CA_FILE",
}

// secretsDir is where the runner secrets are mounted in the containers.
const secretsDir = "/run/secrets/pero"

const usageText = `Usage: pero-watchdog [flags]

Watches the queue backlogs of the stages configured in ZooKeeper and launches short-lived
function containers for them (Docker, or a Docker Swarm with --backend swarm). Several
watchdogs may run: one leads, the others stand by and take over within the ZooKeeper session
timeout. Every flag can also be set by the environment variable named in its help; a flag
given on the command line wins.

Credentials never go on the command line: PERO_MQ_USER, PERO_MQ_PASSWORD or
PERO_MQ_PASSWORD_FILE; PERO_FTP_USER, PERO_FTP_PASSWORD or PERO_FTP_PASSWORD_FILE; PERO_ZK_AUTH
or PERO_ZK_AUTH_FILE; TLS: PERO_MQ_TLS, PERO_MQ_CA_FILE, PERO_MQ_TLS_SERVER_NAME (and PERO_FTP_*).
The containers get them as environment variables, or, for each --runner-secret, as a read-only
file mounted under /run/secrets/pero.

pero-watchdog healthcheck asks a running watchdog's /healthz and exits 0 when it is healthy
(the health check of the watchdog image; see pero-watchdog healthcheck --help).

Flags:
`

// parse reads the options from args and env (KEY=value pairs as os.Environ returns them). It is a
// pure function: errors name the flag or variable at fault, all problems together.
func parse(args []string, env []string) (options, error) {
	vars := map[string]string{}
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			vars[k] = v
		}
	}
	var o options
	fs := pflag.NewFlagSet("pero-watchdog", pflag.ContinueOnError)
	fs.SortFlags = false
	envOf := map[string]string{}
	str := func(p *string, name, envName, def, help string) {
		fs.StringVar(p, name, def, help+" (env "+envName+")")
		envOf[name] = envName
	}
	list := func(p *[]string, name, envName string, def []string, help string) {
		fs.StringSliceVar(p, name, def, help+" (env "+envName+", comma separated)")
		envOf[name] = envName
	}
	dur := func(p *time.Duration, name, envName string, def time.Duration, help string) {
		fs.DurationVar(p, name, def, help+" (env "+envName+")")
		envOf[name] = envName
	}
	integer := func(p *int, name, envName string, def int, help string) {
		fs.IntVar(p, name, def, help+" (env "+envName+")")
		envOf[name] = envName
	}
	var secrets []string
	var logLevel string

	list(&o.zookeeper, "zookeeper", "PERO_ZOOKEEPER", []string{"127.0.0.1:2181"}, "ZooKeeper servers host:port")
	str(&o.zkRoot, "zk-root", "PERO_ZK_ROOT", "/pero", "root znode of the configuration")
	dur(&o.sessionTimeout, "session-timeout", "PERO_ZK_SESSION_TIMEOUT", 10*time.Second,
		"ZooKeeper session timeout: a standby takes over this long after the leader died")
	dur(&o.connectTimeout, "connect-timeout", "PERO_CONNECT_TIMEOUT", 30*time.Second, "give up connecting to a service after this long")
	str(&o.vhost, "vhost", "PERO_MQ_VHOST", "pero", "RabbitMQ virtual host")
	str(&o.id, "id", "PERO_WATCHDOG_ID", "", "name of this watchdog (default: host name and a random suffix)")
	str(&o.scope, "scope", "PERO_SCOPE", "", "label value that marks this deployment's containers (default: the zk root)")
	str(&o.backend, "backend", "PERO_BACKEND", "docker", "docker (this host's engine) or swarm (a Docker Swarm's manager)")
	dur(&o.poll, "poll-interval", "PERO_POLL_INTERVAL", watchdog.DefaultPollInterval, "time between polls")
	dur(&o.targetDrain, "target-drain", "PERO_TARGET_DRAIN", watchdog.DefaultTargetDrain,
		"a stage wants enough containers to process its backlog within this time")
	dur(&o.aging, "aging-interval", "PERO_AGING_INTERVAL", watchdog.DefaultAgingInterval,
		"a stage waiting for capacity gains one priority point per interval")
	dur(&o.quickExit, "quick-exit", "PERO_QUICK_EXIT", watchdog.DefaultQuickExit,
		"a container exiting non-zero within this time counts as a failed start")
	dur(&o.backoffBase, "backoff-base", "PERO_BACKOFF_BASE", watchdog.DefaultBackoffBase, "first backoff of a failing stage")
	dur(&o.backoffMax, "backoff-max", "PERO_BACKOFF_MAX", watchdog.DefaultBackoffMax, "longest backoff of a failing stage")
	integer(&o.cpuSlots, "cpu-slots", "PERO_CPU_SLOTS", 0,
		"containers (times their ceil(cpus)) running at once over all stages; 0 = one per CPU of this host, -1 = unlimited")
	list(&o.gpus, "gpus", "PERO_GPUS", nil, "GPU device IDs (or UUIDs) the watchdog hands out")
	integer(&o.gpuShare, "gpu-share", "PERO_GPU_SHARE", 1, "containers that may share one GPU")
	str(&o.defaultImage, "default-image", "PERO_DEFAULT_IMAGE", "", "image of stages whose settings name none")
	list(&o.allowedImages, "allowed-images", "PERO_ALLOWED_IMAGES", nil,
		"images stages may name, as path.Match patterns (repo/function:*); the default image is always allowed")
	str(&o.network, "network", "PERO_NETWORK", "host", `network of the containers: "host" or a network name`)
	str(&o.cacheVolume, "cache-volume", "PERO_CACHE_VOLUME", "pero-model-cache", `volume of the model cache; "none" for none`)
	str(&o.cacheDir, "cache-dir", "PERO_CACHE_DIR", watchdog.DefaultCacheDir, "where the cache volume is mounted in the containers")
	fs.Int64Var(&o.pidsLimit, "pids-limit", 1024, "processes and threads per container; 0 = no limit (env PERO_PIDS_LIMIT)")
	envOf["pids-limit"] = "PERO_PIDS_LIMIT"
	dur(&o.stopTimeout, "stop-timeout", "PERO_STOP_TIMEOUT", watchdog.DefaultStopTimeout,
		"time a stopped container has to drain before it is killed")
	fs.StringArrayVar(&o.runnerEnv, "runner-env", nil, "KEY=value added to the containers' environment; repeatable (env PERO_RUNNER_ENV, comma separated)")
	envOf["runner-env"] = "PERO_RUNNER_ENV"
	fs.StringArrayVar(&secrets, "runner-secret", nil,
		"NAME=HOST_PATH: mount this host file read-only into the containers instead of passing the value in their "+
			"environment; NAME is mq_password, ftp_password, zk_auth, mq_ca or ftp_ca; repeatable (env PERO_RUNNER_SECRETS, comma separated)")
	envOf["runner-secret"] = "PERO_RUNNER_SECRETS"
	str(&o.swarmGPUKind, "swarm-gpu-resource", "PERO_SWARM_GPU_RESOURCE", "NVIDIA-GPU",
		"generic resource kind the swarm nodes advertise their GPUs as")
	str(&o.metricsAddr, "metrics-addr", "PERO_METRICS_ADDR", ":9464", `address of /metrics and /healthz; "" to serve none`)
	str(&logLevel, "log-level", "LOG_LEVEL", "info", "debug, info, warn or error")
	str(&o.logFormat, "log-format", "LOG_FORMAT", "json", "json or text")

	var errs []error
	fs.SetOutput(discard{})
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return o, &helpError{usage: usageText + fs.FlagUsages()}
		}
		return o, err
	}
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " ")))
	}
	// A variable sets what the command line did not.
	fs.VisitAll(func(f *pflag.Flag) {
		name := envOf[f.Name]
		v, ok := vars[name]
		if f.Changed || !ok || name == "" {
			return
		}
		v = strings.TrimSpace(v)
		if sv, isSlice := f.Value.(pflag.SliceValue); isSlice {
			var items []string
			for _, it := range strings.Split(v, ",") {
				if it = strings.TrimSpace(it); it != "" {
					items = append(items, it)
				}
			}
			if err := sv.Replace(items); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
			return
		}
		if err := f.Value.Set(v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %q: %w", name, v, err))
		}
	})

	bad := func(flag, format string, args ...any) {
		errs = append(errs, fmt.Errorf("--%s (%s): %s", flag, envOf[flag], fmt.Sprintf(format, args...)))
	}
	if len(o.zookeeper) == 0 {
		bad("zookeeper", "at least one host:port is required")
	}
	if !strings.HasPrefix(o.zkRoot, "/") || o.zkRoot == "/" || strings.HasSuffix(o.zkRoot, "/") {
		bad("zk-root", "%q is not an absolute znode path such as /pero", o.zkRoot)
	}
	if o.backend != "docker" && o.backend != "swarm" {
		bad("backend", "%q is not docker or swarm", o.backend)
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"session-timeout", o.sessionTimeout}, {"connect-timeout", o.connectTimeout}, {"poll-interval", o.poll},
		{"target-drain", o.targetDrain}, {"aging-interval", o.aging}, {"quick-exit", o.quickExit},
		{"backoff-base", o.backoffBase}, {"backoff-max", o.backoffMax}, {"stop-timeout", o.stopTimeout}} {
		if d.v <= 0 {
			bad(d.flag, "must be positive")
		}
	}
	if o.backoffMax < o.backoffBase {
		bad("backoff-max", "must be >= --backoff-base")
	}
	if o.cpuSlots < -1 {
		bad("cpu-slots", "must be -1 (unlimited), 0 (one per CPU) or a positive number")
	}
	if o.gpuShare < 1 {
		bad("gpu-share", "must be >= 1")
	}
	for _, g := range o.gpus {
		if strings.ContainsAny(g, " ,") {
			bad("gpus", "%q is not a device ID", g)
		}
	}
	if o.defaultImage == "" && len(o.allowedImages) == 0 {
		bad("allowed-images", "no image may be launched: set --default-image or --allowed-images")
	}
	for _, p := range o.allowedImages {
		if _, err := path.Match(p, ""); err != nil {
			bad("allowed-images", "%q: %v", p, err)
		}
	}
	if o.network == "" {
		bad("network", `must be "host" or a network name`)
	}
	if o.cacheVolume == "none" {
		o.cacheVolume = ""
	}
	if o.cacheVolume != "" && !path.IsAbs(o.cacheDir) {
		bad("cache-dir", "%q is not an absolute path", o.cacheDir)
	}
	if o.pidsLimit < 0 {
		bad("pids-limit", "must be >= 0")
	}
	for _, kv := range o.runnerEnv {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			bad("runner-env", "%q is not KEY=value", kv)
		}
	}
	o.runnerSecrets = map[string]string{}
	for _, s := range secrets {
		name, p, ok := strings.Cut(s, "=")
		switch {
		case !ok || p == "":
			bad("runner-secret", "%q is not NAME=HOST_PATH", s)
		case runnerSecretVars[name] == "":
			bad("runner-secret", "%q: unknown name %q (want one of %s)", s, name, strings.Join(secretNames(), ", "))
		case !path.IsAbs(p):
			bad("runner-secret", "%q: the host path must be absolute", s)
		default:
			o.runnerSecrets[name] = p
		}
	}
	if err := o.logLevel.UnmarshalText([]byte(logLevel)); err != nil {
		bad("log-level", "%q is not debug, info, warn or error", logLevel)
	}
	if o.logFormat != "json" && o.logFormat != "text" {
		bad("log-format", "%q is not json or text", o.logFormat)
	}
	if o.scope == "" {
		o.scope = o.zkRoot
	}
	return o, errors.Join(errs...)
}

func secretNames() []string {
	var names []string
	for n := range runnerSecretVars {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// helpError is parse's answer to --help: the usage text.
type helpError struct{ usage string }

func (h *helpError) Error() string { return "help requested" }
func (h *helpError) Unwrap() error { return pflag.ErrHelp }

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// credentials are the secrets the watchdog read for itself and passes on.
type credentials struct {
	mqUser, mqPassword   string
	ftpUser, ftpPassword string
	zkAuth               string
}

// runnerEnv is the environment and the mounts every container gets: where ZooKeeper is, the
// credentials (as values, or as mounted files for each --runner-secret), the TLS switches the
// watchdog was given, and --runner-env last, so that it wins.
func runnerEnv(o options, c credentials, getenv func(string) string) ([]string, []watchdog.Mount) {
	env := []string{
		"PERO_ZOOKEEPER=" + strings.Join(o.zookeeper, ","),
		"PERO_ZK_ROOT=" + o.zkRoot,
		"PERO_MQ_VHOST=" + o.vhost,
		"PERO_MQ_USER=" + c.mqUser,
		"PERO_FTP_USER=" + c.ftpUser,
	}
	var mounts []watchdog.Mount
	secret := func(name, valueVar, value string) {
		if host, ok := o.runnerSecrets[name]; ok {
			target := secretsDir + "/" + name
			mounts = append(mounts, watchdog.Mount{Source: host, Target: target, ReadOnly: true})
			env = append(env, runnerSecretVars[name]+"="+target)
			return
		}
		if valueVar != "" && value != "" {
			env = append(env, valueVar+"="+value)
		}
	}
	secret("mq_password", "PERO_MQ_PASSWORD", c.mqPassword)
	secret("ftp_password", "PERO_FTP_PASSWORD", c.ftpPassword)
	secret("zk_auth", "PERO_ZK_AUTH", c.zkAuth)
	secret("mq_ca", "", "")
	secret("ftp_ca", "", "")
	for _, k := range []string{"PERO_MQ_TLS", "PERO_MQ_TLS_SERVER_NAME", "PERO_FTP_TLS", "PERO_FTP_TLS_SERVER_NAME"} {
		if v := getenv(k); v != "" {
			env = append(env, k+"="+v)
		}
	}
	return append(env, o.runnerEnv...), mounts
}
