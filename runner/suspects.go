package runner

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"path"

	"github.com/go-zookeeper/zk"

	"github.com/pero-worker/pero-worker/internal/zookeeper"
)

// suspectLog records, in ZooKeeper, which suspect is being processed alone, so that a runner
// receiving it again can tell a message that killed its runner from one that was only held in
// the prefetch window when the runner died. The broker's redelivered flag cannot tell them
// apart; without this, innocent messages prefetched next to a poison one would be counted too.
//
// One persistent node per suspect in processing: <root>/queue/<stage>/suspects/<key>, key the
// hex SHA-256 of the message's uuid, data {"container", "attempts", "started"}. It is created just
// before the function runs and deleted once the outcome is settled; it survives only a runner
// that died (or whose function panicked) on that message.
type suspectLog struct {
	conn  zkConn
	acl   []zk.ACL
	dir   string
	clock Clock
}

func newSuspectLog(store *zookeeper.Store, stage string, clk Clock) *suspectLog {
	return &suspectLog{conn: store.Conn(), acl: store.ACL(), dir: SuspectsPath(store.Root(), stage), clock: clk}
}

// SuspectsPath is the parent of the suspect records of a stage.
func SuspectsPath(root, stage string) string { return path.Join(root, "queue", stage, "suspects") }

func (l *suspectLog) node(uuid string) string {
	sum := sha256.Sum256([]byte(uuid))
	return l.dir + "/" + hex.EncodeToString(sum[:16])
}

// begin records that the message is being processed alone.
func (l *suspectLog) begin(uuid, container string, attempts int32) error {
	data, _ := json.Marshal(map[string]any{"container": container, "attempts": attempts, "started": l.clock.Now().UTC()})
	p := l.node(uuid)
	_, err := l.conn.Create(p, data, 0, l.acl)
	if errors.Is(err, zk.ErrNoNode) {
		if _, perr := l.conn.Create(l.dir, nil, 0, l.acl); perr != nil && !errors.Is(perr, zk.ErrNodeExists) {
			return perr
		}
		_, err = l.conn.Create(p, data, 0, l.acl)
	}
	if errors.Is(err, zk.ErrNodeExists) {
		_, err = l.conn.Set(p, data, -1)
	}
	return err
}

// end removes the record.
func (l *suspectLog) end(uuid string) error {
	err := l.conn.Delete(l.node(uuid), -1)
	if errors.Is(err, zk.ErrNoNode) {
		return nil
	}
	return err
}

// crashed reports whether the message was being processed alone when its runner ended.
func (l *suspectLog) crashed(uuid string) (bool, error) {
	ok, _, err := l.conn.Exists(l.node(uuid))
	return ok, err
}

// suspectRecords is what the consumer and the runner need of a suspectLog.
type suspectRecords interface {
	begin(uuid, container string, attempts int32) error
	end(uuid string) error
	crashed(uuid string) (bool, error)
}

var _ suspectRecords = (*suspectLog)(nil)
