// Package docker is the watchdog's backend for the Docker engine of one host: every function
// container is a plain container with no restart policy, created and started through the Engine
// API (version negotiated, so engines from 20.10 on work), found again by its scope label and
// removed once it has exited and its exit code and last lines are recorded.
package docker

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/pero-worker/pero-worker/watchdog/internal/engine"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pero-worker/pero-worker/watchdog"
)

var _ watchdog.Backend = (*Backend)(nil)

// ErrUnreachable: the engine did not answer when the backend was made.
var ErrUnreachable = engine.ErrUnreachable

// API is the subset of the Docker client the backend uses.
type API interface {
	ContainerCreate(ctx context.Context, config *container.Config, hostConfig *container.HostConfig,
		networkingConfig *network.NetworkingConfig, platform *ocispec.Platform, containerName string) (container.CreateResponse, error)
	ContainerStart(ctx context.Context, containerID string, options container.StartOptions) error
	ContainerList(ctx context.Context, options container.ListOptions) ([]container.Summary, error)
	ContainerInspect(ctx context.Context, containerID string) (container.InspectResponse, error)
	ContainerLogs(ctx context.Context, containerID string, options container.LogsOptions) (io.ReadCloser, error)
	ContainerRemove(ctx context.Context, containerID string, options container.RemoveOptions) error
}

// Config configures New.
type Config struct {
	// Scope is the value of the pero.scope label that marks this deployment's containers.
	// Required.
	Scope string
	// Client talks to the engine. Default: a client configured from DOCKER_HOST and the other
	// DOCKER_* variables, negotiating the API version.
	Client API
	// GPUDriver is the device driver of GPU requests. Default "nvidia".
	GPUDriver string
	// User is the user:group the containers run as, whatever their image says. Default
	// watchdog.RunnerUser, the user of the project's images; root is refused.
	User string
	// Memory limits the memory of containers whose Spec sets none (a stage without memory_mb).
	// Default 8 GiB; a negative value means no limit.
	Memory int64
	// Logger receives the backend's logs. Default slog.Default().
	Logger *slog.Logger
}

// DefaultMemory is the default of Config.Memory.
const DefaultMemory = 8 << 30

// tmpfsTmp is the writable /tmp of the containers, whose root filesystem is read-only.
const tmpfsTmp = "rw,nosuid,nodev,noexec,size=64m"

// Backend launches function containers on one Docker engine.
type Backend struct {
	api    API
	owned  *client.Client // closed by Close when New made it
	scope  string
	driver string
	user   string
	memory int64 // 0: no limit
	log    *slog.Logger
}

// New returns a backend for the engine cfg.Client talks to.
func New(cfg Config) (*Backend, error) {
	if cfg.Scope == "" {
		return nil, errors.New("docker backend: scope: required")
	}
	user := cmp.Or(cfg.User, watchdog.RunnerUser)
	if name, _, _ := strings.Cut(user, ":"); name == "0" || name == "root" {
		return nil, fmt.Errorf("docker backend: user: %q is root; the containers run as an unprivileged user", user)
	}
	b := &Backend{
		api:    cfg.Client,
		scope:  cfg.Scope,
		driver: cmp.Or(cfg.GPUDriver, "nvidia"),
		user:   user,
		memory: max(cmp.Or(cfg.Memory, DefaultMemory), 0),
		log:    cmp.Or(cfg.Logger, slog.Default()).With("component", "docker"),
	}
	if b.api == nil {
		c, err := engine.Dial()
		if err != nil {
			return nil, fmt.Errorf("docker backend: %w", err)
		}
		b.api, b.owned = c, c
	}
	return b, nil
}

// Close releases the client New made.
func (b *Backend) Close() error {
	if b.owned != nil {
		return b.owned.Close()
	}
	return nil
}

// Launch creates and starts the container; a container that does not start is removed.
func (b *Backend) Launch(ctx context.Context, spec watchdog.Spec) (watchdog.Container, error) {
	cfg, host := b.containerConfig(spec)
	resp, err := b.api.ContainerCreate(ctx, cfg, host, nil, nil, spec.Name)
	if err != nil {
		return watchdog.Container{}, fmt.Errorf("create container %s (image %s): %w", spec.Name, spec.Image, err)
	}
	for _, w := range resp.Warnings {
		b.log.Warn("engine warning on create", "container", spec.Name, "warning", w)
	}
	if err := b.api.ContainerStart(ctx, resp.ID, container.StartOptions{}); err != nil {
		// Remove with a context of its own: ctx may be what ended the start.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if rerr := b.api.ContainerRemove(rctx, resp.ID, container.RemoveOptions{Force: true}); rerr != nil &&
			!cerrdefs.IsNotFound(rerr) {
			b.log.Warn("remove container that failed to start", "container", spec.Name, "err", rerr)
		}
		return watchdog.Container{}, fmt.Errorf("start container %s (image %s): %w", spec.Name, spec.Image, err)
	}
	c := watchdog.Container{ID: resp.ID, Name: spec.Name, State: watchdog.Up}
	watchdog.FromLabels(&c, spec.Labels)
	return c, nil
}

// containerConfig builds the engine's configuration for spec.
func (b *Backend) containerConfig(spec watchdog.Spec) (*container.Config, *container.HostConfig) {
	labels := make(map[string]string, len(spec.Labels)+1)
	for k, v := range spec.Labels {
		labels[k] = v
	}
	labels[watchdog.LabelScope] = b.scope
	cfg := &container.Config{
		Image:  spec.Image,
		Env:    spec.Env,
		Labels: labels,
		User:   b.user,
	}
	if spec.StopTimeout > 0 {
		secs := int((spec.StopTimeout + time.Second - 1) / time.Second)
		cfg.StopTimeout = &secs
	}
	memory := cmp.Or(spec.MemoryBytes, b.memory)
	host := &container.HostConfig{
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
		CapDrop:       []string{"ALL"},
		SecurityOpt:   []string{"no-new-privileges"},
		// The runner writes only to the model cache (a volume) and /tmp.
		ReadonlyRootfs: true,
		Tmpfs:          map[string]string{"/tmp": tmpfsTmp},
		// Keep the runner's output for Logs after exit, bounded.
		LogConfig: container.LogConfig{Type: "json-file", Config: map[string]string{"max-size": "10m", "max-file": "2"}},
		Resources: container.Resources{
			NanoCPUs: spec.NanoCPUs,
			Memory:   memory,
		},
	}
	if memory > 0 {
		host.MemorySwap = memory // no swap beyond the limit
	}
	if spec.PidsLimit > 0 {
		pids := spec.PidsLimit
		host.PidsLimit = &pids
	}
	if spec.Network != "" {
		host.NetworkMode = container.NetworkMode(spec.Network)
	}
	if len(spec.GPUs) > 0 {
		host.DeviceRequests = []container.DeviceRequest{{
			Driver:       b.driver,
			DeviceIDs:    spec.GPUs,
			Capabilities: [][]string{{"gpu"}},
		}}
	}
	for _, m := range spec.Mounts {
		mt := mount.Mount{Target: m.Target, ReadOnly: m.ReadOnly}
		if m.Volume != "" || m.Source == "" { // no source: an anonymous volume
			mt.Type, mt.Source = mount.TypeVolume, m.Volume
		} else {
			mt.Type, mt.Source = mount.TypeBind, m.Source
		}
		host.Mounts = append(host.Mounts, mt)
	}
	return cfg, host
}

// List returns the scope's containers. Exited ones are inspected for their exit code.
func (b *Backend) List(ctx context.Context) ([]watchdog.Container, error) {
	list, err := b.api.ContainerList(ctx, container.ListOptions{
		All:     true,
		Filters: filters.NewArgs(filters.Arg("label", watchdog.LabelScope+"="+b.scope)),
	})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := make([]watchdog.Container, 0, len(list))
	for _, s := range list {
		c := watchdog.Container{ID: s.ID, Created: time.Unix(s.Created, 0)}
		if len(s.Names) > 0 {
			c.Name = strings.TrimPrefix(s.Names[0], "/")
		}
		watchdog.FromLabels(&c, s.Labels)
		switch s.State {
		case container.StateCreated:
			c.State = watchdog.Pending
		case container.StateExited, container.StateDead:
			c.State = watchdog.Exited
			if err := b.exitInfo(ctx, &c); err != nil {
				if cerrdefs.IsNotFound(err) {
					continue // removed meanwhile
				}
				return nil, err
			}
		default: // running, paused, restarting, removing
			c.State = watchdog.Up
		}
		out = append(out, c)
	}
	return out, nil
}

func (b *Backend) exitInfo(ctx context.Context, c *watchdog.Container) error {
	in, err := b.api.ContainerInspect(ctx, c.ID)
	if err != nil {
		return fmt.Errorf("inspect container %s: %w", c.Name, err)
	}
	if in.State == nil {
		return nil
	}
	c.ExitCode = in.State.ExitCode
	c.Error = in.State.Error
	if in.State.OOMKilled {
		c.Error = strings.TrimSpace("out of memory " + c.Error)
	}
	c.Started = parseTime(in.State.StartedAt)
	c.Finished = parseTime(in.State.FinishedAt)
	return nil
}

// parseTime reads the engine's RFC 3339 times; its zero time ("0001-01-01T00:00:00Z") reads zero.
func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() <= 1 {
		return time.Time{}
	}
	return t
}

// Logs returns the last lines of the container's stdout and stderr, merged.
func (b *Backend) Logs(ctx context.Context, id string, lines int) (string, error) {
	rc, err := b.api.ContainerLogs(ctx, id, container.LogsOptions{
		ShowStdout: true, ShowStderr: true, Tail: strconv.Itoa(max(lines, 1)),
	})
	if err != nil {
		return "", fmt.Errorf("logs of container %s: %w", id, err)
	}
	defer rc.Close()
	var buf bytes.Buffer
	w := &limitWriter{w: &buf, n: 64 << 10}
	if _, err := stdcopy.StdCopy(w, w, rc); err != nil && !errors.Is(err, errLimit) {
		return buf.String(), fmt.Errorf("logs of container %s: %w", id, err)
	}
	return strings.TrimRight(buf.String(), "\n"), nil
}

var errLimit = errors.New("log limit reached")

// limitWriter keeps at most n bytes of a container's output.
type limitWriter struct {
	w io.Writer
	n int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errLimit
	}
	if len(p) > l.n {
		p = p[:l.n]
	}
	n, err := l.w.Write(p)
	l.n -= n
	return n, err
}

// Remove deletes the container and its anonymous volumes; named volumes (the model cache) stay.
func (b *Backend) Remove(ctx context.Context, id string) error {
	err := b.api.ContainerRemove(ctx, id, container.RemoveOptions{RemoveVolumes: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove container %s: %w", id, err)
	}
	return nil
}
