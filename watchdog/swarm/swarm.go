// Package swarm is the watchdog's backend for a Docker Swarm: it runs the same decisions across
// the swarm's nodes by creating one replicated-job service (one task, run to completion, never
// restarted) per function container, through a manager's Engine API.
//
// # Limits
//
//   - GPUs only through generic resources: each node's daemon must advertise its GPUs
//     (node-generic-resources "NVIDIA-GPU=<uuid>" in daemon.json, with the NVIDIA runtime as its
//     default runtime); a service reserves a number of them (Config.GPUResource) and the swarm
//     picks which, passing their IDs to the container in DOCKER_RESOURCE_<KIND>. The watchdog's
//     per-GPU ledger and specific device IDs do not apply, and GPU sharing is not possible.
//   - The watchdog's CPU slots describe the whole swarm; the swarm's scheduler places each task
//     on a node with room for its reservations (set equal to the stage's CPU and memory limits).
//   - Networks: "host" attaches the node's host network; any other network must be swarm-scoped
//     (overlay). Secret files given as bind mounts must exist at the same path on every node,
//     and the model cache volume is a local volume per node.
//   - Every node must have the function image (there is no pull here without a registry).
//   - Scheduling adds to the start time; the service's tasks are found through the manager, so
//     the watchdog must run on (or reach) a manager node.
package swarm

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pero-worker/pero-worker/watchdog/internal/engine"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/pero-worker/pero-worker/watchdog"
)

var _ watchdog.Backend = (*Backend)(nil)

// ErrUnreachable: the engine did not answer when the backend was made.
var ErrUnreachable = engine.ErrUnreachable

// API is the subset of the Docker client the backend uses.
type API interface {
	ServiceCreate(ctx context.Context, service swarm.ServiceSpec, options swarm.ServiceCreateOptions) (swarm.ServiceCreateResponse, error)
	ServiceList(ctx context.Context, options swarm.ServiceListOptions) ([]swarm.Service, error)
	ServiceRemove(ctx context.Context, serviceID string) error
	ServiceLogs(ctx context.Context, serviceID string, options container.LogsOptions) (io.ReadCloser, error)
	TaskList(ctx context.Context, options swarm.TaskListOptions) ([]swarm.Task, error)
}

// Config configures New.
type Config struct {
	// Scope is the value of the pero.scope label that marks this deployment's services. Required.
	Scope string
	// Client talks to a manager. Default: a client from DOCKER_HOST and the other DOCKER_*
	// variables, negotiating the API version.
	Client API
	// GPUResource is the generic resource kind the nodes advertise their GPUs as. Default
	// "NVIDIA-GPU".
	GPUResource string
	// Logger receives the backend's logs. Default slog.Default().
	Logger *slog.Logger
}

// Backend runs function containers as replicated-job services on a swarm.
type Backend struct {
	api     API
	owned   *client.Client
	scope   string
	gpuKind string
	log     *slog.Logger
}

// New returns a backend for the swarm cfg.Client's engine manages.
func New(cfg Config) (*Backend, error) {
	if cfg.Scope == "" {
		return nil, errors.New("swarm backend: scope: required")
	}
	b := &Backend{
		api:     cfg.Client,
		scope:   cfg.Scope,
		gpuKind: cmp.Or(cfg.GPUResource, "NVIDIA-GPU"),
		log:     cmp.Or(cfg.Logger, slog.Default()).With("component", "swarm"),
	}
	if b.api == nil {
		c, err := engine.Dial()
		if err != nil {
			return nil, fmt.Errorf("swarm backend: %w", err)
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

// Launch creates the service; the swarm schedules its one task.
func (b *Backend) Launch(ctx context.Context, spec watchdog.Spec) (watchdog.Container, error) {
	svc := b.serviceSpec(spec)
	resp, err := b.api.ServiceCreate(ctx, svc, swarm.ServiceCreateOptions{QueryRegistry: false})
	if err != nil {
		return watchdog.Container{}, fmt.Errorf("create service %s (image %s): %w", spec.Name, spec.Image, err)
	}
	for _, w := range resp.Warnings {
		b.log.Debug("engine warning on service create", "service", spec.Name, "warning", w)
	}
	c := watchdog.Container{ID: resp.ID, Name: spec.Name, State: watchdog.Pending}
	watchdog.FromLabels(&c, svc.Annotations.Labels)
	return c, nil
}

func (b *Backend) serviceSpec(spec watchdog.Spec) swarm.ServiceSpec {
	labels := make(map[string]string, len(spec.Labels)+1)
	for k, v := range spec.Labels {
		labels[k] = v
	}
	labels[watchdog.LabelScope] = b.scope
	one := uint64(1)
	// Hardened as on one host (package docker): an unprivileged user that cannot gain privileges,
	// a read-only root filesystem with a small writable /tmp.
	cs := &swarm.ContainerSpec{
		Image:          spec.Image,
		Env:            spec.Env,
		Labels:         labels,
		User:           watchdog.RunnerUser,
		ReadOnly:       true,
		CapabilityDrop: []string{"ALL"},
		Privileges:     &swarm.Privileges{NoNewPrivileges: true},
	}
	if spec.StopTimeout > 0 {
		d := spec.StopTimeout
		cs.StopGracePeriod = &d
	}
	for _, m := range spec.Mounts {
		mt := mount.Mount{Target: m.Target, ReadOnly: m.ReadOnly}
		if m.Volume != "" || m.Source == "" { // no source: an anonymous volume
			mt.Type, mt.Source = mount.TypeVolume, m.Volume
		} else {
			mt.Type, mt.Source = mount.TypeBind, m.Source
		}
		cs.Mounts = append(cs.Mounts, mt)
	}
	cs.Mounts = append(cs.Mounts, mount.Mount{Type: mount.TypeTmpfs, Target: "/tmp",
		TmpfsOptions: &mount.TmpfsOptions{SizeBytes: 64 << 20, Mode: 0o1777}})
	res := &swarm.ResourceRequirements{
		Limits: &swarm.Limit{NanoCPUs: spec.NanoCPUs, MemoryBytes: spec.MemoryBytes, Pids: spec.PidsLimit},
	}
	if spec.NanoCPUs > 0 || spec.MemoryBytes > 0 || len(spec.GPUs) > 0 {
		res.Reservations = &swarm.Resources{NanoCPUs: spec.NanoCPUs, MemoryBytes: spec.MemoryBytes}
		if len(spec.GPUs) > 0 {
			res.Reservations.GenericResources = []swarm.GenericResource{{
				DiscreteResourceSpec: &swarm.DiscreteGenericResource{Kind: b.gpuKind, Value: int64(len(spec.GPUs))},
			}}
		}
	}
	task := swarm.TaskSpec{
		ContainerSpec: cs,
		Resources:     res,
		RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionNone},
	}
	if spec.Network != "" {
		task.Networks = []swarm.NetworkAttachmentConfig{{Target: spec.Network}}
	}
	return swarm.ServiceSpec{
		Annotations:  swarm.Annotations{Name: spec.Name, Labels: labels},
		TaskTemplate: task,
		Mode:         swarm.ServiceMode{ReplicatedJob: &swarm.ReplicatedJob{MaxConcurrent: &one, TotalCompletions: &one}},
	}
}

// List returns the scope's services, each as the container of its latest task.
func (b *Backend) List(ctx context.Context) ([]watchdog.Container, error) {
	svcs, err := b.api.ServiceList(ctx, swarm.ServiceListOptions{
		Filters: filters.NewArgs(filters.Arg("label", watchdog.LabelScope+"="+b.scope)),
	})
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	if len(svcs) == 0 {
		return nil, nil
	}
	args := filters.NewArgs()
	for _, s := range svcs {
		args.Add("service", s.ID)
	}
	tasks, err := b.api.TaskList(ctx, swarm.TaskListOptions{Filters: args})
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	latest := map[string]swarm.Task{}
	for _, t := range tasks {
		if cur, ok := latest[t.ServiceID]; !ok || t.Meta.CreatedAt.After(cur.Meta.CreatedAt) {
			latest[t.ServiceID] = t
		}
	}
	out := make([]watchdog.Container, 0, len(svcs))
	for _, s := range svcs {
		c := watchdog.Container{ID: s.ID, Name: s.Spec.Annotations.Name, Created: s.Meta.CreatedAt, State: watchdog.Pending}
		watchdog.FromLabels(&c, s.Spec.Annotations.Labels)
		if t, ok := latest[s.ID]; ok {
			taskState(&c, t)
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b watchdog.Container) int { return a.Created.Compare(b.Created) })
	return out, nil
}

// taskState maps a task's state onto the container.
func taskState(c *watchdog.Container, t swarm.Task) {
	st := t.Status
	code := -1
	if st.ContainerStatus != nil && st.ContainerStatus.ContainerID != "" {
		code = st.ContainerStatus.ExitCode
	}
	switch st.State {
	case swarm.TaskStateRunning:
		c.State, c.Started = watchdog.Up, st.Timestamp
	case swarm.TaskStateComplete:
		c.State, c.ExitCode, c.Finished = watchdog.Exited, 0, st.Timestamp
	case swarm.TaskStateFailed, swarm.TaskStateRejected, swarm.TaskStateShutdown, swarm.TaskStateOrphaned,
		swarm.TaskStateRemove:
		c.State, c.ExitCode, c.Finished = watchdog.Exited, code, st.Timestamp
		if code == 0 && st.State != swarm.TaskStateShutdown {
			c.ExitCode = -1
		}
		c.Error = strings.TrimSpace(cmp.Or(st.Err, string(st.State)+": "+st.Message))
	default: // new .. starting
		c.State = watchdog.Pending
	}
}

// Logs returns the last lines of the service's output, stdout and stderr merged.
func (b *Backend) Logs(ctx context.Context, id string, lines int) (string, error) {
	rc, err := b.api.ServiceLogs(ctx, id, container.LogsOptions{
		ShowStdout: true, ShowStderr: true, Tail: strconv.Itoa(max(lines, 1)),
	})
	if err != nil {
		return "", fmt.Errorf("logs of service %s: %w", id, err)
	}
	defer rc.Close()
	var buf bytes.Buffer
	// The service log stream ends when the task's log is read; bound the wait anyway.
	done := make(chan error, 1)
	go func() {
		_, err := stdcopy.StdCopy(&buf, &buf, io.LimitReader(rc, 1<<20))
		done <- err
	}()
	select {
	case err = <-done:
	case <-ctx.Done():
		rc.Close()
		<-done
		err = ctx.Err()
	case <-time.After(10 * time.Second):
		rc.Close()
		<-done
	}
	if err != nil {
		return buf.String(), fmt.Errorf("logs of service %s: %w", id, err)
	}
	return strings.TrimRight(buf.String(), "\n"), nil
}

// Remove deletes the service (and so its task's container); a missing one is not an error.
func (b *Backend) Remove(ctx context.Context, id string) error {
	if err := b.api.ServiceRemove(ctx, id); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove service %s: %w", id, err)
	}
	return nil
}
