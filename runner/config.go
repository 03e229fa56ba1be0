package runner

import (
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pero-worker/pero-worker/internal/creds"
	"github.com/pero-worker/pero-worker/internal/zookeeper"
)

// Config is what a runner needs from its environment. New builds it; every field's comment names
// its variable, its default and what zero means.
type Config struct {
	// Stage is the stage (and queue) this runner serves. PERO_STAGE, required.
	Stage string
	// ZooKeeper lists the ZooKeeper servers as host:port. PERO_ZOOKEEPER, comma separated;
	// default 127.0.0.1:2181.
	ZooKeeper []string
	// ZKRoot is the root znode. PERO_ZK_ROOT, default /pero.
	ZKRoot string
	// ZKAuth is "user:password" for ZooKeeper digest authentication. PERO_ZK_AUTH or the file
	// named by PERO_ZK_AUTH_FILE; empty means none.
	ZKAuth string
	// MQ are the RabbitMQ credentials. PERO_MQ_USER and PERO_MQ_PASSWORD (or
	// PERO_MQ_PASSWORD_FILE); default guest/guest.
	MQ creds.Credentials
	// MQVHost is the RabbitMQ virtual host. PERO_MQ_VHOST, default pero.
	MQVHost string
	// MQTLS turns on amqps when non-nil. PERO_MQ_TLS, PERO_MQ_CA_FILE, PERO_MQ_TLS_SERVER_NAME.
	MQTLS *tls.Config
	// FTP are the credentials of the file server holding model archives. PERO_FTP_USER and
	// PERO_FTP_PASSWORD (or PERO_FTP_PASSWORD_FILE); default user pero, empty password.
	FTP creds.Credentials
	// FTPTLS turns on explicit FTP TLS when non-nil. PERO_FTP_TLS, PERO_FTP_CA_FILE,
	// PERO_FTP_TLS_SERVER_NAME.
	FTPTLS *tls.Config
	// CacheDir is the model cache, shared by the runners of a host. PERO_CACHE_DIR, default
	// /var/cache/pero.
	CacheDir string
	// CacheMaxBytes is the byte budget of the model cache; least recently used models not in use
	// are evicted above it. PERO_CACHE_MAX_BYTES (bytes, or with a K/M/G/T or Ki/Mi/Gi/Ti suffix),
	// default 20GiB.
	CacheMaxBytes int64
	// Extract bounds what one model archive may unpack to. PERO_MODEL_MAX_BYTES (default 16GiB),
	// PERO_MODEL_MAX_RATIO (unpacked/packed size, default 200), PERO_MODEL_MAX_FILES (default
	// 100000).
	Extract ExtractLimits
	// ContainerID names this runner in ZooKeeper (status and statistics nodes) and in the logs.
	// PERO_CONTAINER_ID, else HOSTNAME (Docker sets it to the short container id); required.
	ContainerID string
	// HostID is written into the StageLog of every page. PERO_HOST_ID, default ContainerID.
	HostID string
	// LogLevel is debug, info, warn or error. LOG_LEVEL, default info.
	LogLevel slog.Level
	// LogFormat is json or text. LOG_FORMAT, default json.
	LogFormat string
	// GracePeriod is how long a stop signal lets the current batch finish before it is cancelled
	// and its unfinished pages are requeued. PERO_GRACE_PERIOD, default 25s (Docker kills after
	// 10s unless the container's stop timeout is raised; the watchdog sets it above this).
	GracePeriod time.Duration
	// BatchWait is how long a batch waits to fill after its first message. PERO_BATCH_WAIT,
	// default 50ms; 0 takes only what has already arrived.
	BatchWait time.Duration
	// ConnectTimeout is how long the runner keeps trying to reach ZooKeeper, RabbitMQ and the
	// file server at start, and RabbitMQ after losing it, before it exits with ExitUnavailable.
	// PERO_CONNECT_TIMEOUT, default 60s.
	ConnectTimeout time.Duration
	// StatsInterval spaces the statistics written to ZooKeeper and the progress log lines.
	// PERO_STATS_INTERVAL, default 5s.
	StatsInterval time.Duration
	// Override replaces the stage's settings from ZooKeeper where set.
	Override Override
}

// Override holds per-stage limits given in the environment; a zero field keeps the stage's
// setting from ZooKeeper.
type Override struct {
	Function      string        // PERO_FUNCTION
	BatchSize     int           // PERO_BATCH_SIZE
	BatchTimeout  time.Duration // PERO_BATCH_TIMEOUT
	IdleTimeout   time.Duration // PERO_IDLE_TIMEOUT
	MaxLifetime   time.Duration // PERO_MAX_LIFETIME
	MaxBatches    int           // PERO_MAX_BATCHES
	MaxDeliveries int           // PERO_MAX_DELIVERIES
}

// Apply returns s with the overrides that are set.
func (o Override) Apply(s zookeeper.Settings) zookeeper.Settings {
	s.Function = cmp.Or(o.Function, s.Function)
	s.BatchSize = cmp.Or(o.BatchSize, s.BatchSize)
	s.BatchTimeout = cmp.Or(zookeeper.Duration(o.BatchTimeout), s.BatchTimeout)
	s.IdleTimeout = cmp.Or(zookeeper.Duration(o.IdleTimeout), s.IdleTimeout)
	s.MaxLifetime = cmp.Or(zookeeper.Duration(o.MaxLifetime), s.MaxLifetime)
	s.MaxBatches = cmp.Or(o.MaxBatches, s.MaxBatches)
	s.MaxDeliveries = cmp.Or(o.MaxDeliveries, s.MaxDeliveries)
	return s
}

// Defaults of Config.
const (
	DefaultZooKeeper      = "127.0.0.1:2181"
	DefaultZKRoot         = "/pero"
	DefaultVHost          = "pero"
	DefaultCacheDir       = "/var/cache/pero"
	DefaultCacheMaxBytes  = 20 << 30
	DefaultGracePeriod    = 25 * time.Second
	DefaultBatchWait      = 50 * time.Millisecond
	DefaultConnectTimeout = 60 * time.Second
	DefaultStatsInterval  = 5 * time.Second
)

// maxBatchSize is the largest prefetch window AMQP allows.
const maxBatchSize = 65535

// New reads the configuration from env, a list of KEY=value pairs as os.Environ returns them
// (the last of duplicate keys wins). It reads no other state except the secret and CA files the
// variables name. Errors name the variable; all problems are reported together.
func New(env []string) (Config, error) {
	vars := make(map[string]string, len(env))
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			vars[k] = v
		}
	}
	get := func(k string) string { return strings.TrimSpace(vars[k]) }
	p := parser{get: get}

	cfg := Config{
		Stage:     get("PERO_STAGE"),
		ZKRoot:    cmp.Or(get("PERO_ZK_ROOT"), DefaultZKRoot),
		MQVHost:   cmp.Or(get("PERO_MQ_VHOST"), DefaultVHost),
		CacheDir:  cmp.Or(get("PERO_CACHE_DIR"), DefaultCacheDir),
		LogFormat: strings.ToLower(cmp.Or(get("LOG_FORMAT"), "json")),
	}
	if cfg.Stage == "" {
		p.fail("PERO_STAGE", "required: the stage (queue) this runner serves")
	} else if strings.ContainsAny(cfg.Stage, "/ ") || cfg.Stage == "." || cfg.Stage == ".." {
		p.fail("PERO_STAGE", "%q is not a stage name", cfg.Stage)
	}
	for _, s := range strings.Split(cmp.Or(get("PERO_ZOOKEEPER"), DefaultZooKeeper), ",") {
		if s = strings.TrimSpace(s); s != "" {
			cfg.ZooKeeper = append(cfg.ZooKeeper, s)
		}
	}
	if len(cfg.ZooKeeper) == 0 {
		p.fail("PERO_ZOOKEEPER", "no server given")
	}
	if !strings.HasPrefix(cfg.ZKRoot, "/") || strings.HasSuffix(cfg.ZKRoot, "/") {
		p.fail("PERO_ZK_ROOT", "%q is not an absolute znode path such as /pero", cfg.ZKRoot)
	}

	cfg.ZKAuth = vars["PERO_ZK_AUTH"]
	if f := get("PERO_ZK_AUTH_FILE"); f != "" {
		if cfg.ZKAuth != "" {
			p.fail("PERO_ZK_AUTH_FILE", "PERO_ZK_AUTH is set too: use one")
		} else if b, err := os.ReadFile(f); err != nil {
			p.fail("PERO_ZK_AUTH_FILE", "%v", err)
		} else {
			cfg.ZKAuth = strings.TrimRight(string(b), "\r\n")
		}
	}
	if cfg.ZKAuth != "" {
		if u, _, ok := strings.Cut(cfg.ZKAuth, ":"); !ok || u == "" {
			p.fail("PERO_ZK_AUTH", `must be "user:password"`)
		}
	}

	var err error
	if cfg.MQ, err = creds.FromEnv(func(k string) string { return vars[k] }, "PERO_MQ", "guest", "guest"); err != nil {
		p.errs = append(p.errs, err)
	}
	if cfg.MQTLS, err = creds.TLSFromEnv(get, "PERO_MQ"); err != nil {
		p.errs = append(p.errs, err)
	}
	if cfg.FTP, err = creds.FromEnv(func(k string) string { return vars[k] }, "PERO_FTP", "pero", ""); err != nil {
		p.errs = append(p.errs, err)
	}
	if cfg.FTPTLS, err = creds.TLSFromEnv(get, "PERO_FTP"); err != nil {
		p.errs = append(p.errs, err)
	}

	cfg.CacheMaxBytes = p.bytes("PERO_CACHE_MAX_BYTES", DefaultCacheMaxBytes)
	cfg.Extract = ExtractLimits{
		MaxBytes: p.bytes("PERO_MODEL_MAX_BYTES", DefaultMaxExtractBytes),
		MaxRatio: p.float("PERO_MODEL_MAX_RATIO", DefaultMaxRatio),
		MaxFiles: p.int("PERO_MODEL_MAX_FILES", DefaultMaxFiles, 1, math.MaxInt32),
	}

	cfg.ContainerID = cmp.Or(get("PERO_CONTAINER_ID"), get("HOSTNAME"))
	switch {
	case cfg.ContainerID == "":
		p.fail("PERO_CONTAINER_ID", "required (or HOSTNAME): names this runner in ZooKeeper")
	case strings.ContainsAny(cfg.ContainerID, "/ ") || cfg.ContainerID == "." || cfg.ContainerID == "..":
		p.fail("PERO_CONTAINER_ID", "%q cannot name a znode", cfg.ContainerID)
	}
	cfg.HostID = cmp.Or(get("PERO_HOST_ID"), cfg.ContainerID)

	if v := get("LOG_LEVEL"); v != "" {
		if err := cfg.LogLevel.UnmarshalText([]byte(v)); err != nil {
			p.fail("LOG_LEVEL", "%q is not debug, info, warn or error", v)
		}
	}
	if cfg.LogFormat != "json" && cfg.LogFormat != "text" {
		p.fail("LOG_FORMAT", "%q is not json or text", cfg.LogFormat)
	}

	cfg.GracePeriod = p.duration("PERO_GRACE_PERIOD", DefaultGracePeriod, false)
	cfg.BatchWait = p.duration("PERO_BATCH_WAIT", DefaultBatchWait, true)
	cfg.ConnectTimeout = p.duration("PERO_CONNECT_TIMEOUT", DefaultConnectTimeout, false)
	cfg.StatsInterval = p.duration("PERO_STATS_INTERVAL", DefaultStatsInterval, false)

	o := &cfg.Override
	o.Function = get("PERO_FUNCTION")
	o.BatchSize = p.int("PERO_BATCH_SIZE", 0, 1, maxBatchSize)
	o.BatchTimeout = p.duration("PERO_BATCH_TIMEOUT", 0, false)
	o.IdleTimeout = p.duration("PERO_IDLE_TIMEOUT", 0, false)
	o.MaxLifetime = p.duration("PERO_MAX_LIFETIME", 0, false)
	o.MaxBatches = p.int("PERO_MAX_BATCHES", 0, 1, math.MaxInt32)
	o.MaxDeliveries = p.int("PERO_MAX_DELIVERIES", 0, 1, math.MaxInt32)

	if len(p.errs) > 0 {
		return Config{}, &ExitError{Code: ExitConfig, Err: fmt.Errorf("configuration: %w", errors.Join(p.errs...))}
	}
	return cfg, nil
}

// parser collects the errors of the variables it reads.
type parser struct {
	get  func(string) string
	errs []error
}

func (p *parser) fail(name, format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("%s: "+format, append([]any{name}, args...)...))
}

// duration reads a Go duration ("30s", "1m30s"); unset gives def. Zero is accepted only with
// zeroOK; negative never.
func (p *parser) duration(name string, def time.Duration, zeroOK bool) time.Duration {
	v := p.get(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	switch {
	case err != nil:
		p.fail(name, "%q is not a duration such as 30s or 1m30s", v)
	case d < 0 || d == 0 && !zeroOK:
		p.fail(name, "%q must be positive", v)
	default:
		return d
	}
	return def
}

// int reads an integer in lo..hi; unset gives def.
func (p *parser) int(name string, def, lo, hi int) int {
	v := p.get(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	switch {
	case err != nil:
		p.fail(name, "%q is not an integer", v)
	case n < lo || n > hi:
		p.fail(name, "%d is out of range %d..%d", n, lo, hi)
	default:
		return n
	}
	return def
}

// float reads a positive number; unset gives def.
func (p *parser) float(name string, def float64) float64 {
	v := p.get(name)
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f <= 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		p.fail(name, "%q is not a positive number", v)
		return def
	}
	return f
}

// bytes reads a size in bytes with an optional decimal (K, M, G, T) or binary (Ki, Mi, Gi, Ti)
// suffix, optionally followed by B; unset gives def.
func (p *parser) bytes(name string, def int64) int64 {
	v := p.get(name)
	if v == "" {
		return def
	}
	n, err := parseBytes(v)
	if err != nil {
		p.fail(name, "%q: %v", v, err)
		return def
	}
	return n
}

func parseBytes(v string) (int64, error) {
	s := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSpace(v), "B"), "b")
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{
		{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
		{"K", 1e3}, {"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12},
	} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(n) {
		return 0, fmt.Errorf("not a size such as 20GiB or 500M")
	}
	if n <= 0 {
		return 0, fmt.Errorf("must be positive")
	}
	b := n * float64(mult)
	if b >= math.MaxInt64 {
		return 0, fmt.Errorf("too large")
	}
	return int64(b), nil
}

// Settings validates the stage's settings after the overrides; errors name the setting and,
// where one is set, the variable that overrode it.
func (cfg Config) Settings(s zookeeper.Settings) (zookeeper.Settings, error) {
	s = cfg.Override.Apply(s).WithDefaults()
	if err := s.Validate(); err != nil {
		return s, fmt.Errorf("settings of stage %q (ZooKeeper, or the PERO_* overrides): %w", cfg.Stage, err)
	}
	if s.BatchSize > maxBatchSize {
		return s, fmt.Errorf("settings of stage %q: batch_size: %d exceeds %d", cfg.Stage, s.BatchSize, maxBatchSize)
	}
	return s, nil
}
