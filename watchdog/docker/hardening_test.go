package docker

import (
	"strings"
	"testing"

	"github.com/docker/docker/api/types/mount"

	"github.com/pero-worker/pero-worker/watchdog"
)

// Every container runs as an unprivileged user without the means to gain privileges, on a
// read-only root filesystem with a small writable /tmp, and with a memory limit even when its
// stage sets none.
func TestContainerHardening(t *testing.T) {
	b, err := New(Config{Scope: "s", Client: nopAPI{}})
	if err != nil {
		t.Fatal(err)
	}
	cfg, host := b.containerConfig(watchdog.Spec{Name: "x", Image: "any/image:1",
		Mounts: []watchdog.Mount{{Target: "/var/cache/pero"}}})
	if cfg.User != watchdog.RunnerUser {
		t.Errorf("user %q, want %q whatever the image says", cfg.User, watchdog.RunnerUser)
	}
	if !host.ReadonlyRootfs || host.Tmpfs["/tmp"] == "" || !strings.Contains(host.Tmpfs["/tmp"], "noexec") {
		t.Errorf("read-only root %v, tmpfs %v", host.ReadonlyRootfs, host.Tmpfs)
	}
	if host.Privileged || len(host.CapAdd) > 0 || len(host.CapDrop) != 1 || host.CapDrop[0] != "ALL" ||
		len(host.SecurityOpt) != 1 || host.SecurityOpt[0] != "no-new-privileges" {
		t.Errorf("privileges: privileged %v, cap add %v drop %v, security %v", host.Privileged, host.CapAdd, host.CapDrop, host.SecurityOpt)
	}
	if host.Memory != DefaultMemory || host.MemorySwap != DefaultMemory {
		t.Errorf("memory %d swap %d, want the default limit %d", host.Memory, host.MemorySwap, DefaultMemory)
	}
	// Without a cache volume the cache is an anonymous volume, writable on the read-only root.
	if len(host.Mounts) != 1 || host.Mounts[0].Type != mount.TypeVolume || host.Mounts[0].Source != "" ||
		host.Mounts[0].Target != "/var/cache/pero" {
		t.Errorf("mounts %+v", host.Mounts)
	}
	// A stage's own memory limit wins; the default can be changed or turned off.
	_, host = b.containerConfig(watchdog.Spec{Name: "x", Image: "i", MemoryBytes: 1 << 30})
	if host.Memory != 1<<30 {
		t.Errorf("stage memory %d", host.Memory)
	}
	b, _ = New(Config{Scope: "s", Client: nopAPI{}, Memory: -1, User: "1000:1000"})
	cfg, host = b.containerConfig(watchdog.Spec{Name: "x", Image: "i"})
	if host.Memory != 0 || host.MemorySwap != 0 || cfg.User != "1000:1000" {
		t.Errorf("memory %d user %q", host.Memory, cfg.User)
	}
	for _, root := range []string{"0", "root", "0:0", "root:root"} {
		if _, err := New(Config{Scope: "s", Client: nopAPI{}, User: root}); err == nil {
			t.Errorf("user %q accepted", root)
		}
	}
}
