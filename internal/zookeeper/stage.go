package zookeeper

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"
)

// Stage is one processing stage: a queue of the same name and the configuration its runners use.
type Stage struct {
	// Name is the stage and its queue name, one znode path element.
	Name string
	// Config is the stage's config.ini text (node config).
	Config string
	// ConfigPath is the path of the model archive on the FTP server; "" means none (node config_path).
	ConfigPath string
	// ConfigVersion identifies the configuration (node config_version); runners stamp it into their
	// StageLog. CreateStage and UpdateStage set it to the UTC ISO time of the change unless given.
	ConfigVersion string
	// AdministrativePriority is the administrator's preference for the stage, 0 by default (node
	// administrative_priority).
	AdministrativePriority uint64
	// AvgMsgTime is the measured seconds per message; 0 means not measured yet (node avg_msg_time).
	// RecordTiming maintains it.
	AvgMsgTime float64
	// ModelSHA256 is the hex SHA-256 of the model archive at ConfigPath; "" means unchecked (node
	// model_sha256, new).
	ModelSHA256 string
	// Settings are how the stage runs (node settings, new).
	Settings Settings
	// Version is the data version of the config_version node, which every configuration change
	// rewrites, also one made with the original's tools; -1 when that node is missing. Read-only:
	// UpdateStage ignores changes to it.
	Version int32
}

// Settings are how a stage runs: which function, which container image, how many containers, and
// the runner's limits. Zero values mean the default, as WithDefaults fills them in.
type Settings struct {
	// Function is the function the runner calls (ocr, detect, recognize, noop, sleep, ...).
	// Default "ocr".
	Function string `json:"function"`
	// Image is the container image of the stage. Default "": the watchdog's default function image.
	Image string `json:"image"`
	// BatchSize is how many messages a runner processes at once. Default 8.
	BatchSize int `json:"batch_size"`
	// MinContainers is how many containers to keep running even with an empty queue. Default 0.
	MinContainers int `json:"min_containers"`
	// MaxContainers caps the stage's containers. Default 1; zero means the default.
	MaxContainers int `json:"max_containers"`
	// GPUs is the number of GPUs given to each container. Default 0: CPU only.
	GPUs int `json:"gpus"`
	// CPUs limits each container's CPU; 0 means no limit.
	CPUs float64 `json:"cpus"`
	// MemoryMB limits each container's memory in MiB; 0 means the backend's default (8 GiB on
	// Docker, none on a swarm).
	MemoryMB int `json:"memory_mb"`
	// BatchTimeout bounds the processing of one batch. Default 5m.
	BatchTimeout Duration `json:"batch_timeout"`
	// IdleTimeout: a runner exits after its queue stayed empty this long. Default 30s.
	IdleTimeout Duration `json:"idle_timeout"`
	// MaxLifetime: a runner exits after running this long. Default 1h.
	MaxLifetime Duration `json:"max_lifetime"`
	// MaxBatches: a runner exits after this many batches; 0 means no limit.
	MaxBatches int `json:"max_batches"`
	// MaxDeliveries is how often a message is delivered before it goes to the dead-letter queue.
	// Default 3.
	MaxDeliveries int `json:"max_deliveries"`
	// Output marks an output-only stage (like "out"): no containers are launched for it.
	Output bool `json:"output"`
}

// Defaults of Settings.
const (
	DefaultFunction      = "ocr"
	DefaultBatchSize     = 8
	DefaultMaxContainers = 1
	DefaultBatchTimeout  = 5 * time.Minute
	DefaultIdleTimeout   = 30 * time.Second
	DefaultMaxLifetime   = time.Hour
	DefaultMaxDeliveries = 3
)

// WithDefaults returns s with every zero field that has a default set to it.
func (s Settings) WithDefaults() Settings {
	setZero(&s.Function, DefaultFunction)
	setZero(&s.BatchSize, DefaultBatchSize)
	setZero(&s.MaxContainers, DefaultMaxContainers)
	setZero(&s.BatchTimeout, Duration(DefaultBatchTimeout))
	setZero(&s.IdleTimeout, Duration(DefaultIdleTimeout))
	setZero(&s.MaxLifetime, Duration(DefaultMaxLifetime))
	setZero(&s.MaxDeliveries, DefaultMaxDeliveries)
	return s
}

func setZero[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}

var functionName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// Validate checks s with its defaults filled in. Each problem names its field, as in
// "max_containers: must be >= min_containers"; all problems are joined.
func (s Settings) Validate() error {
	d := s.WithDefaults()
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf(field+": "+format, args...))
	}
	if !functionName.MatchString(d.Function) || len(d.Function) > 128 {
		bad("function", "%q is not a function name", d.Function)
	}
	if strings.ContainsFunc(d.Image, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		bad("image", "%q contains whitespace or control characters", d.Image)
	}
	if d.BatchSize < 1 {
		bad("batch_size", "must be >= 1")
	}
	if d.MinContainers < 0 {
		bad("min_containers", "must be >= 0")
	}
	if d.MaxContainers < d.MinContainers {
		bad("max_containers", "must be >= min_containers")
	}
	if d.MaxContainers < 1 {
		bad("max_containers", "must be >= 1")
	}
	if d.Output && d.MinContainers > 0 {
		bad("min_containers", "must be 0 for an output stage")
	}
	if d.GPUs < 0 {
		bad("gpus", "must be >= 0")
	}
	if d.CPUs < 0 || math.IsNaN(d.CPUs) || math.IsInf(d.CPUs, 0) {
		bad("cpus", "must be a number >= 0")
	}
	if d.MemoryMB < 0 {
		bad("memory_mb", "must be >= 0")
	}
	if d.BatchTimeout < 0 {
		bad("batch_timeout", "must be positive")
	}
	if d.IdleTimeout < 0 {
		bad("idle_timeout", "must be positive")
	}
	if d.MaxLifetime < 0 {
		bad("max_lifetime", "must be positive")
	}
	if d.MaxBatches < 0 {
		bad("max_batches", "must be >= 0")
	}
	if d.MaxDeliveries < 1 {
		bad("max_deliveries", "must be >= 1")
	}
	return errors.Join(errs...)
}

// Duration is a time.Duration that reads and writes JSON as a Go duration string ("30s").
type Duration time.Duration

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a duration string such as "1m30s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"30s\": %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// The nodes below <root>/queue/<stage>.
const (
	nodeConfig        = "config"
	nodeConfigPath    = "config_path"
	nodeConfigVersion = "config_version"
	nodeAdminPriority = "administrative_priority"
	nodeAvgMsgTime    = "avg_msg_time"
	nodeWaitingSince  = "waiting_since"
	nodeModelSHA256   = "model_sha256"
	nodeSettings      = "settings"
	nodeStats         = "stats"
)

// stageFields are the nodes a Stage is read from. avg_msg_time comes last: it changes with every
// statistics update, so UpdateStage does not guard on it and WatchStage does not wake for it.
var stageFields = []string{nodeConfig, nodeConfigPath, nodeConfigVersion, nodeAdminPriority,
	nodeModelSHA256, nodeSettings, nodeAvgMsgTime}

func (s *Store) queuePath() string { return s.root + "/queue" }

func (s *Store) stagePath(name string) string { return s.queuePath() + "/" + name }

// node is what was read of one znode.
type node struct {
	data    []byte
	version int32
	exists  bool
}

// stageNodes holds the stage's own node under "" and its field nodes under their names.
type stageNodes map[string]node

// readStage reads the stage node and its field nodes; ErrNotFound when the stage does not exist.
func (s *Store) readStage(ctx context.Context, name string) (stageNodes, error) {
	dir := s.stagePath(name)
	nodes := make(stageNodes, len(stageFields)+1)
	_, stat, ok, err := s.getNode(ctx, dir)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrNotFound
	}
	nodes[""] = node{version: stat.Version, exists: true}
	missing := false
	for _, f := range stageFields {
		data, stat, ok, err := s.getNode(ctx, dir+"/"+f)
		if err != nil {
			return nil, err
		}
		if ok {
			nodes[f] = node{data: data, version: stat.Version, exists: true}
		} else {
			missing = true
		}
	}
	if missing { // a stage of the original lacks the new nodes, a stage deleted meanwhile lacks all
		if ok, err := s.exists(ctx, dir); err != nil || !ok {
			return nil, cmpErr(err, ErrNotFound)
		}
	}
	return nodes, nil
}

func cmpErr(err, def error) error {
	if err != nil {
		return err
	}
	return def
}

// decodeStage builds a Stage from its nodes. Missing nodes, as stages created by the original lack
// model_sha256 and settings, read as zero values and default settings.
func decodeStage(name string, nodes stageNodes) (Stage, error) {
	st := Stage{
		Name:          name,
		Config:        string(nodes[nodeConfig].data),
		ConfigPath:    string(nodes[nodeConfigPath].data),
		ConfigVersion: string(nodes[nodeConfigVersion].data),
		ModelSHA256:   strings.TrimSpace(string(nodes[nodeModelSHA256].data)),
		Version:       -1,
	}
	if n := nodes[nodeConfigVersion]; n.exists {
		st.Version = n.version
	}
	var err error
	if st.AdministrativePriority, err = decodeUint(nodes[nodeAdminPriority].data); err != nil {
		return Stage{}, fmt.Errorf("%s: %w", nodeAdminPriority, err)
	}
	if st.AvgMsgTime, err = decodeAvgMsgTime(nodes[nodeAvgMsgTime].data); err != nil {
		return Stage{}, fmt.Errorf("%s: %w", nodeAvgMsgTime, err)
	}
	if data := nodes[nodeSettings].data; len(strings.TrimSpace(string(data))) > 0 {
		if err := json.Unmarshal(data, &st.Settings); err != nil {
			return Stage{}, fmt.Errorf("%s: %w", nodeSettings, err)
		}
	}
	st.Settings = st.Settings.WithDefaults()
	return st, nil
}

// CreateStage creates the stage with all its nodes in one transaction; ErrExists when it exists.
// An empty ConfigVersion becomes the UTC ISO time; Settings are stored with their defaults filled.
func (s *Store) CreateStage(ctx context.Context, st Stage) error {
	if err := validateName(st.Name); err != nil {
		return fmt.Errorf("create stage: name: %w", err)
	}
	if err := validateStage(st); err != nil {
		return fmt.Errorf("create stage %q: %w", st.Name, err)
	}
	if st.ConfigVersion == "" {
		st.ConfigVersion = pythonISOTime(s.now())
	}
	settings, err := json.Marshal(st.Settings.WithDefaults())
	if err != nil {
		return fmt.Errorf("create stage %q: %w", st.Name, err)
	}
	if err := s.ensurePath(ctx, s.queuePath()); err != nil {
		return fmt.Errorf("create stage %q: %w", st.Name, err)
	}
	dir := s.stagePath(st.Name)
	nodes := []struct {
		name string
		data []byte
	}{
		{"", nil},
		{nodeConfig, []byte(st.Config)},
		{nodeConfigPath, []byte(st.ConfigPath)},
		{nodeConfigVersion, []byte(st.ConfigVersion)},
		{nodeAdminPriority, encodeUint(st.AdministrativePriority)},
		{nodeAvgMsgTime, encodeAvgMsgTime(st.AvgMsgTime)},
		{nodeWaitingSince, nil},
		{nodeModelSHA256, []byte(strings.ToLower(st.ModelSHA256))},
		{nodeSettings, settings},
		{nodeStats, nil},
	}
	ops := make([]any, 0, len(nodes))
	for _, n := range nodes {
		p := dir
		if n.name != "" {
			p += "/" + n.name
		}
		ops = append(ops, &zk.CreateRequest{Path: p, Data: n.data, Acl: s.acl})
	}
	if _, err := s.multi(ctx, ops...); err != nil {
		if errors.Is(err, zk.ErrNodeExists) {
			err = ErrExists
		}
		return fmt.Errorf("create stage %q: %w", st.Name, err)
	}
	return nil
}

// validateStage checks the fields a caller sets.
func validateStage(st Stage) error {
	if err := st.Settings.Validate(); err != nil {
		return err
	}
	if err := validateSHA256(st.ModelSHA256); err != nil {
		return fmt.Errorf("model_sha256: %w", err)
	}
	if st.AvgMsgTime < 0 || math.IsNaN(st.AvgMsgTime) || math.IsInf(st.AvgMsgTime, 0) {
		return errors.New("avg_msg_time: must be a number >= 0")
	}
	return nil
}

func validateSHA256(h string) error {
	if h == "" {
		return nil
	}
	if b, err := hex.DecodeString(h); err != nil || len(b) != 32 {
		return fmt.Errorf("%q is not 64 hex digits", h)
	}
	return nil
}

// encodeAvgMsgTime writes 0, "not measured", as the empty node the original creates.
func encodeAvgMsgTime(f float64) []byte {
	if f == 0 {
		return nil
	}
	return []byte(formatFloatHex(f))
}

// GetStage reads the stage; ErrNotFound when it does not exist.
func (s *Store) GetStage(ctx context.Context, name string) (Stage, error) {
	if err := validateName(name); err != nil {
		return Stage{}, fmt.Errorf("get stage: name: %w", err)
	}
	nodes, err := s.readStage(ctx, name)
	if err != nil {
		return Stage{}, fmt.Errorf("get stage %q: %w", name, err)
	}
	st, err := decodeStage(name, nodes)
	if err != nil {
		return Stage{}, fmt.Errorf("get stage %q: %w", name, err)
	}
	return st, nil
}

// UpdateStage reads the stage, applies fn to it and writes the nodes that changed in one
// transaction that fails if any configuration node changed since the read (compare-and-set). On such
// a conflict it reads again and calls fn again, so fn must have no other effects; after repeated
// conflicts it gives up with ErrConflict. A change of Config, ConfigPath, ModelSHA256 or Settings
// sets ConfigVersion to the current UTC ISO time unless fn set ConfigVersion itself. An error from
// fn aborts the update and is returned wrapped. It returns the stage as written.
func (s *Store) UpdateStage(ctx context.Context, name string, fn func(*Stage) error) (Stage, error) {
	if err := validateName(name); err != nil {
		return Stage{}, fmt.Errorf("update stage: name: %w", err)
	}
	for attempt := 0; attempt < casAttempts; attempt++ {
		if attempt > 0 {
			if err := sleep(ctx, backoff(attempt-1)); err != nil {
				return Stage{}, fmt.Errorf("update stage %q: %w", name, err)
			}
		}
		nodes, err := s.readStage(ctx, name)
		if err != nil {
			return Stage{}, fmt.Errorf("update stage %q: %w", name, err)
		}
		cur, err := decodeStage(name, nodes)
		if err != nil {
			return Stage{}, fmt.Errorf("update stage %q: %w", name, err)
		}
		next := cur
		if err := fn(&next); err != nil {
			return Stage{}, fmt.Errorf("update stage %q: %w", name, err)
		}
		writes, err := s.stageChanges(cur, &next)
		if err != nil {
			return Stage{}, fmt.Errorf("update stage %q: %w", name, err)
		}
		if len(writes) == 0 {
			return cur, nil
		}
		ops, versionOp := s.updateOps(s.stagePath(name), nodes, writes)
		res, err := s.multi(ctx, ops...)
		if isConflict(err) {
			continue
		}
		if err != nil {
			return Stage{}, fmt.Errorf("update stage %q: %w", name, err)
		}
		if versionOp >= 0 {
			next.Version = 0 // created
			if st := res[versionOp].Stat; st != nil {
				next.Version = st.Version
			}
		}
		return next, nil
	}
	return Stage{}, fmt.Errorf("update stage %q: %w", name, ErrConflict)
}

// stageChanges validates next and returns the data of the field nodes that differ from cur. It
// fills in next's ConfigVersion and Settings defaults as they will be written.
func (s *Store) stageChanges(cur Stage, next *Stage) (map[string][]byte, error) {
	if next.Name != cur.Name {
		return nil, errors.New("name: cannot be changed")
	}
	next.Version = cur.Version
	next.Settings = next.Settings.WithDefaults()
	writes := map[string][]byte{}
	if next.Settings != cur.Settings {
		if err := next.Settings.Validate(); err != nil {
			return nil, err
		}
		b, err := json.Marshal(next.Settings)
		if err != nil {
			return nil, err
		}
		writes[nodeSettings] = b
	}
	if next.ModelSHA256 != cur.ModelSHA256 {
		if err := validateSHA256(next.ModelSHA256); err != nil {
			return nil, fmt.Errorf("model_sha256: %w", err)
		}
		next.ModelSHA256 = strings.ToLower(next.ModelSHA256)
		writes[nodeModelSHA256] = []byte(next.ModelSHA256)
	}
	if next.Config != cur.Config {
		writes[nodeConfig] = []byte(next.Config)
	}
	if next.ConfigPath != cur.ConfigPath {
		writes[nodeConfigPath] = []byte(next.ConfigPath)
	}
	if len(writes) > 0 && next.ConfigVersion == cur.ConfigVersion {
		next.ConfigVersion = pythonISOTime(s.now())
	}
	if next.ConfigVersion != cur.ConfigVersion {
		writes[nodeConfigVersion] = []byte(next.ConfigVersion)
	}
	if next.AdministrativePriority != cur.AdministrativePriority {
		writes[nodeAdminPriority] = encodeUint(next.AdministrativePriority)
	}
	if next.AvgMsgTime != cur.AvgMsgTime {
		if next.AvgMsgTime < 0 || math.IsNaN(next.AvgMsgTime) || math.IsInf(next.AvgMsgTime, 0) {
			return nil, errors.New("avg_msg_time: must be a number >= 0")
		}
		writes[nodeAvgMsgTime] = encodeAvgMsgTime(next.AvgMsgTime)
	}
	return writes, nil
}

// updateOps builds the transaction: the stage node's own version is bumped with a check, so two
// UpdateStage calls always conflict; every configuration node read is either written or checked at
// the version read, so a change by any other tool conflicts too. It also returns the index of the
// config_version write, or -1.
func (s *Store) updateOps(dir string, nodes stageNodes, writes map[string][]byte) ([]any, int) {
	ops := []any{&zk.SetDataRequest{Path: dir, Data: nil, Version: nodes[""].version}}
	versionOp := -1
	for _, f := range stageFields {
		p, n := dir+"/"+f, nodes[f]
		data, write := writes[f]
		switch {
		case write && n.exists:
			ops = append(ops, &zk.SetDataRequest{Path: p, Data: data, Version: n.version})
		case write:
			ops = append(ops, &zk.CreateRequest{Path: p, Data: data, Acl: s.acl})
		case n.exists && f != nodeAvgMsgTime:
			ops = append(ops, &zk.CheckVersionRequest{Path: p, Version: n.version})
		default:
			continue
		}
		if f == nodeConfigVersion && write {
			versionOp = len(ops) - 1
		}
	}
	return ops, versionOp
}

// DeleteStage deletes the stage and everything below it in one transaction; ErrNotFound when it
// does not exist.
func (s *Store) DeleteStage(ctx context.Context, name string) error {
	if err := validateName(name); err != nil {
		return fmt.Errorf("delete stage: name: %w", err)
	}
	err := s.deleteTree(ctx, s.stagePath(name))
	if errors.Is(err, zk.ErrNoNode) {
		err = ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("delete stage %q: %w", name, err)
	}
	return nil
}

// ListStages returns the names of all stages, sorted; none is not an error.
func (s *Store) ListStages(ctx context.Context) ([]string, error) {
	names, err := s.children(ctx, s.queuePath())
	if errors.Is(err, zk.ErrNoNode) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list stages: %w", err)
	}
	slices.Sort(names)
	return names, nil
}
