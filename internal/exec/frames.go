package exec

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"time"
)

// The node daemon sends and records a few messages per task whose JSON is
// fixed but for an ID, a number and a time. They are written out here
// rather than through encoding/json's reflection; each gives the same
// bytes json.Marshal gives (frames_test.go checks it), so the protocol and
// the journal are unchanged. The status, with its free-form text, still
// goes through encoding/json, once: the status file and the end event
// carry the same encoding.

// startReplyFrame is replyFrame(reply{Seq: seq, StartedAt: startedAt}).
func startReplyFrame(seq uint64, startedAt time.Time) []byte {
	if seq == 0 { // never: requests have one; but then it is left out
		return replyFrame(reply{StartedAt: startedAt})
	}
	var at []byte
	if !startedAt.IsZero() {
		var err error
		if at, err = startedAt.MarshalJSON(); err != nil {
			return replyFrame(reply{Seq: seq, StartedAt: startedAt}) // its error frame
		}
	}
	b := make([]byte, 4, 4+len(`{"seq":,"started_at":}`)+20+len(at))
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	if at != nil {
		b = append(b, `,"started_at":`...)
		b = append(b, at...)
	}
	b = append(b, '}')
	return finishFrame(b)
}

// endEventFrame is the frame of reply{Event: &taskEndEvent{ID: id, Result:
// the status whose compact JSON is result}}. id is a valid task ID: no
// character in it needs escaping.
func endEventFrame(id string, result []byte) ([]byte, error) {
	if err := validID(id); err != nil {
		return nil, err
	}
	b := make([]byte, 4, 4+len(`{"event":{"id":"","result":}}`)+len(id)+len(result))
	b = append(b, `{"event":{"id":"`...)
	b = append(b, id...)
	b = append(b, `","result":`...)
	b = append(b, result...)
	b = append(b, "}}"...)
	if len(b)-4 > maxFrame {
		return nil, fmt.Errorf("message of %d bytes exceeds the %d byte limit", len(b)-4, maxFrame)
	}
	return finishFrame(b), nil
}

// finishFrame fills in the length of the frame b (a 4-byte placeholder,
// then the body).
func finishFrame(b []byte) []byte {
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

// journalEndLine is json.Marshal(journalRecord{Op: journalEnd, ID: id})
// and a newline; id is a valid task ID.
func journalEndLine(id string) []byte {
	b := make([]byte, 0, len(`{"op":"end","id":""}`)+len(id)+1)
	b = append(b, `{"op":"`+journalEnd+`","id":"`...)
	b = append(b, id...)
	return append(b, "\"}\n"...)
}

// encodeStatusOnce encodes r for both the status file (indented, as
// encodeStatus) and the end event (compact).
func encodeStatusOnce(r Result) (file, compact []byte, err error) {
	compact, err = json.Marshal(statusJSON(r))
	if err != nil {
		return nil, nil, err
	}
	var buf bytes.Buffer
	buf.Grow(len(compact) + len(compact)/2)
	if err := json.Indent(&buf, compact, "", "  "); err != nil {
		return nil, nil, err
	}
	return buf.Bytes(), compact, nil
}

// writeStatusData writes an encoded status file (encodeStatus or
// encodeStatusOnce) into taskDir.
func writeStatusData(taskDir string, data []byte) error {
	return writeAtomic(filepath.Join(taskDir, statusFile), data)
}
