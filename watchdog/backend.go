package watchdog

import (
	"context"
	"strconv"
	"strings"
	"time"
)

// Backend runs function containers: the Docker engine of this host (package watchdog/docker) or a
// Docker Swarm (package watchdog/swarm). Every container a backend launches carries the labels of
// its Spec; List finds them again by the scope label, whichever watchdog launched them, so that a
// watchdog taking over adopts the containers of its predecessor.
type Backend interface {
	// Launch creates and starts one container. When it fails nothing is left behind.
	Launch(ctx context.Context, spec Spec) (Container, error)
	// List returns the containers of the scope, alive or exited, launched by any watchdog.
	List(ctx context.Context) ([]Container, error)
	// Logs returns the last lines of a container's output, stdout and stderr merged.
	Logs(ctx context.Context, id string, lines int) (string, error)
	// Remove deletes an exited container; removing a missing one is not an error.
	Remove(ctx context.Context, id string) error
}

// Spec is one container to launch.
type Spec struct {
	// Name is the container's name, unique on the engine; it is also the runner's
	// PERO_CONTAINER_ID, which names its status and statistics nodes.
	Name  string
	Image string
	// Env holds KEY=value pairs; credentials go here or into files (Mounts), never into argv.
	Env []string
	// Labels identify the container; see the Label constants.
	Labels map[string]string
	// NanoCPUs limits the CPU (1e9 = one CPU); 0 means no limit.
	NanoCPUs int64
	// MemoryBytes limits the memory; 0 means the backend's default limit.
	MemoryBytes int64
	// PidsLimit limits the processes and threads; 0 means no limit.
	PidsLimit int64
	// GPUs are the device IDs the container gets (Docker); on a swarm only their number counts.
	GPUs []string
	// StopTimeout is how long a stop waits before it kills; the runner drains its batch meanwhile.
	StopTimeout time.Duration
	// Network is "host" or the name of a network to attach to; "" means the engine's default.
	Network string
	// Mounts are the model cache volume and read-only secret files.
	Mounts []Mount
}

// Mount is a volume or a host file mounted into the container.
type Mount struct {
	// Volume names a Docker volume; when empty, Source is a host path (a bind mount); when both
	// are empty, the container gets an anonymous volume of its own, removed with it.
	Volume string
	Source string
	Target string
	// ReadOnly mounts it read-only; secret files always are.
	ReadOnly bool
}

// State is a container's life stage as the watchdog sees it.
type State int

const (
	// Pending: created or scheduled, not started yet.
	Pending State = iota
	// Up: its process runs.
	Up
	// Exited: it ended; ExitCode says how.
	Exited
)

func (s State) String() string {
	switch s {
	case Pending:
		return "pending"
	case Up:
		return "up"
	case Exited:
		return "exited"
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// Container is one function container as the backend reports it.
type Container struct {
	// ID is what Logs and Remove take: a container ID, or a service ID on a swarm.
	ID   string
	Name string
	// Stage, ConfigVersion, Watchdog and GPUs are read back from the labels.
	Stage         string
	ConfigVersion string
	Watchdog      string
	GPUs          []string
	State         State
	// ExitCode is set when State is Exited; -1 when the container never ran (a swarm task the
	// scheduler rejected).
	ExitCode int
	// Error is the backend's reason for a failure that is not the process's (image missing, OOM).
	Error string
	// Created is when it was launched; Started and Finished are zero until they happen.
	Created, Started, Finished time.Time
}

// RunnerUser is the user:group every function container runs as, whatever its image says: the
// user of the project's images, never root.
const RunnerUser = "65532:65532"

// The labels on every container the watchdog launches.
const (
	// LabelScope separates deployments sharing an engine; List matches it.
	LabelScope = "pero.scope"
	// LabelStage is the stage the container serves.
	LabelStage = "pero.stage"
	// LabelConfigVersion is the stage's configuration version at launch.
	LabelConfigVersion = "pero.config-version"
	// LabelWatchdog is the id of the watchdog that launched it.
	LabelWatchdog = "pero.watchdog"
	// LabelGPUs lists its GPU device IDs, comma separated; the ledger is rebuilt from it.
	LabelGPUs = "pero.gpus"
	// LabelCreated is the launch time (RFC 3339 with nanoseconds).
	LabelCreated = "pero.created"
)

// Labels returns the labels of a container of stage launched by watchdog id in scope.
func Labels(scope, stage, configVersion, watchdog string, gpus []string, created time.Time) map[string]string {
	l := map[string]string{
		LabelScope:         scope,
		LabelStage:         stage,
		LabelConfigVersion: configVersion,
		LabelWatchdog:      watchdog,
		LabelCreated:       created.UTC().Format(time.RFC3339Nano),
	}
	if len(gpus) > 0 {
		l[LabelGPUs] = strings.Join(gpus, ",")
	}
	return l
}

// FromLabels fills the fields of c that the labels carry. Created is taken from the label when
// the backend's own timestamp is coarser or missing.
func FromLabels(c *Container, labels map[string]string) {
	c.Stage = labels[LabelStage]
	c.ConfigVersion = labels[LabelConfigVersion]
	c.Watchdog = labels[LabelWatchdog]
	c.GPUs = nil
	if g := labels[LabelGPUs]; g != "" {
		c.GPUs = strings.Split(g, ",")
	}
	if t, err := time.Parse(time.RFC3339Nano, labels[LabelCreated]); err == nil {
		c.Created = t
	}
}
