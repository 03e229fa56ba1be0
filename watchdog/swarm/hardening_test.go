package swarm

import (
	"testing"

	"github.com/docker/docker/api/types/mount"

	"github.com/pero-worker/pero-worker/watchdog"
)

// The services' containers are hardened as on one host: an unprivileged user that cannot gain
// privileges, a read-only root filesystem with a small writable /tmp, no capabilities.
func TestServiceHardening(t *testing.T) {
	b, err := New(Config{Scope: "s", Client: nopAPI{}})
	if err != nil {
		t.Fatal(err)
	}
	cs := b.serviceSpec(watchdog.Spec{Name: "x", Image: "i", Mounts: []watchdog.Mount{{Target: "/var/cache/pero"}}}).
		TaskTemplate.ContainerSpec
	if cs.User != watchdog.RunnerUser || !cs.ReadOnly || cs.Privileges == nil || !cs.Privileges.NoNewPrivileges ||
		len(cs.CapabilityDrop) != 1 || cs.CapabilityDrop[0] != "ALL" {
		t.Errorf("user %q read-only %v privileges %+v cap drop %v", cs.User, cs.ReadOnly, cs.Privileges, cs.CapabilityDrop)
	}
	if len(cs.Mounts) != 2 || cs.Mounts[0].Type != mount.TypeVolume || cs.Mounts[0].Source != "" ||
		cs.Mounts[1].Type != mount.TypeTmpfs || cs.Mounts[1].Target != "/tmp" {
		t.Errorf("mounts %+v", cs.Mounts)
	}
}
