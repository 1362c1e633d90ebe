package framing

import (
	"fmt"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// kmsgMaxVersions is kmsg v1.15.0's newest version of every request it knows,
// committed so that upgrading kmsg (a one-line go.mod change) fails
// TestKmsgMaxVersions and names every API that moved. For each one, check
// whether the new versions carry broker addresses (then versionCaps or the
// rewriter must know) and whether the proxy parses anything in them (Produce
// acks, headers); then update this table.
var kmsgMaxVersions = map[string]int16{
	"Produce": 13, "Fetch": 18, "ListOffsets": 11, "Metadata": 13, "LeaderAndISR": 7, "StopReplica": 4,
	"UpdateMetadata": 8, "ControlledShutdown": 3, "OffsetCommit": 10, "OffsetFetch": 10, "FindCoordinator": 6,
	"JoinGroup": 9, "Heartbeat": 4, "LeaveGroup": 5, "SyncGroup": 5, "DescribeGroups": 6, "ListGroups": 5,
	"SASLHandshake": 1, "ApiVersions": 5, "CreateTopics": 7, "DeleteTopics": 6, "DeleteRecords": 2,
	"InitProducerID": 5, "OffsetForLeaderEpoch": 4, "AddPartitionsToTxn": 5, "AddOffsetsToTxn": 4, "EndTxn": 5,
	"WriteTxnMarkers": 2, "TxnOffsetCommit": 6, "DescribeACLs": 3, "CreateACLs": 3, "DeleteACLs": 3,
	"DescribeConfigs": 4, "AlterConfigs": 2, "AlterReplicaLogDirs": 2, "DescribeLogDirs": 5,
	"SASLAuthenticate": 2, "CreatePartitions": 3, "CreateDelegationToken": 3, "RenewDelegationToken": 2,
	"ExpireDelegationToken": 2, "DescribeDelegationToken": 3, "DeleteGroups": 3, "ElectLeaders": 2,
	"IncrementalAlterConfigs": 1, "AlterPartitionAssignments": 1, "ListPartitionReassignments": 0,
	"OffsetDelete": 0, "DescribeClientQuotas": 1, "AlterClientQuotas": 1, "DescribeUserSCRAMCredentials": 0,
	"AlterUserSCRAMCredentials": 0, "Vote": 2, "BeginQuorumEpoch": 1, "EndQuorumEpoch": 1, "DescribeQuorum": 2,
	"AlterPartition": 3, "UpdateFeatures": 2, "Envelope": 0, "FetchSnapshot": 1, "DescribeCluster": 2,
	"DescribeProducers": 0, "BrokerRegistration": 4, "BrokerHeartbeat": 2, "UnregisterBroker": 0,
	"DescribeTransactions": 0, "ListTransactions": 2, "AllocateProducerIDs": 0, "ConsumerGroupHeartbeat": 1,
	"ConsumerGroupDescribe": 1, "ControllerRegistration": 0, "GetTelemetrySubscriptions": 0,
	"PushTelemetry": 0, "AssignReplicasToDirs": 0, "ListConfigResources": 1, "DescribeTopicPartitions": 0,
	"ShareGroupHeartbeat": 1, "ShareGroupDescribe": 1, "ShareFetch": 2, "ShareAcknowledge": 2,
	"AddRaftVoter": 1, "RemoveRaftVoter": 0, "UpdateRaftVoter": 0, "InitializeShareGroupState": 0,
	"ReadShareGroupState": 0, "WriteShareGroupState": 1, "DeleteShareGroupState": 0,
	"ReadShareGroupStateSummary": 1, "StreamsGroupHeartbeat": 1, "StreamsGroupDescribe": 1,
	"DescribeShareGroupOffsets": 1, "AlterShareGroupOffsets": 0, "DeleteShareGroupOffsets": 0,
	"StreamsGroupTopologyDescriptionUpdate": 0, "UnregisterController": 0,
}

// TestKmsgMaxVersions tells which APIs moved when kmsg is upgraded.
func TestKmsgMaxVersions(t *testing.T) {
	var moved []string
	seen := map[string]bool{}
	for key := int16(0); key <= kmsg.MaxKey; key++ {
		req := kmsg.RequestForKey(key)
		if req == nil {
			continue
		}
		name := kmsg.NameForKey(key)
		seen[name] = true
		was, ok := kmsgMaxVersions[name]
		switch {
		case !ok:
			moved = append(moved, fmt.Sprintf("%s (key %d): new in kmsg, max v%d", name, key, req.MaxVersion()))
		case was != req.MaxVersion():
			moved = append(moved, fmt.Sprintf("%s (key %d): max v%d -> v%d", name, key, was, req.MaxVersion()))
		}
	}
	for name := range kmsgMaxVersions {
		if !seen[name] {
			moved = append(moved, name+": gone from kmsg")
		}
	}
	if len(moved) > 0 {
		t.Errorf("kmsg's request versions changed; review versionCaps (broker addresses in new versions?) and update kmsgMaxVersions:\n  %s",
			strings.Join(moved, "\n  "))
	}
}

// TestVersionCaps holds the KIP-951 decision: no version whose response may
// carry NodeEndpoints is served.
func TestVersionCaps(t *testing.T) {
	for _, tt := range []struct {
		key  kmsg.Key
		want int16
	}{
		{kmsg.Produce, 9},           // NodeEndpoints from v10
		{kmsg.Fetch, 15},            // NodeEndpoints from v16
		{kmsg.ShareFetch, -1},       // NodeEndpoints in every version
		{kmsg.ShareAcknowledge, -1}, // NodeEndpoints in every version
		{kmsg.Metadata, 13},         // rewritten, not capped
	} {
		if got, ok := MaxVersion(tt.key.Int16()); got != tt.want || !ok {
			t.Errorf("MaxVersion(%s) = %d, %v, want %d, true", kmsg.NameForKey(tt.key.Int16()), got, ok, tt.want)
		}
	}
}
