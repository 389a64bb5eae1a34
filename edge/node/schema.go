package node

import (
	"context"
	"fmt"
	"sort"

	bmqtt "github.com/outpost-edge/outpost/bridge/mqtt"
	"github.com/outpost-edge/outpost/bridge/route"
	"github.com/outpost-edge/outpost/bridge/schemacheck"
	"github.com/outpost-edge/outpost/sync/schema"
)

// openSchema builds the schema check of the routes that name a subject
// and, if any do, loads the node's copy of the registry from the metadata
// store (sync/schema), so checks work before and without the uplink. A
// topic whose schema the node does not know is named at start with the
// policy that applies. The syncer runs beside the forwarder on the shared
// uplink (runUplink).
func (n *Node) openSchema(ctx context.Context, router *route.Router) error {
	policy, _ := schemacheck.ParsePolicy(n.cfg.OnUnknownSchema) // validated
	c, err := schemacheck.New(schemacheck.Config{
		Topics: router.Topics(), OnUnknown: policy,
		Logger: n.logger.With("component", "schema"), Registerer: n.reg,
	})
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	subjects := c.Subjects()
	if len(subjects) == 0 {
		return nil
	}
	n.checker = c
	s, err := schema.Open(ctx, schema.Config{
		Subjects: subjects, OnUpdate: c.Update,
		Logger: n.logger.With("component", "schema"), Registerer: n.reg,
	}, n.meta)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.schemaSync = s
	unknown := c.Unknown()
	topics := make([]string, 0, len(unknown))
	for t := range unknown {
		topics = append(topics, t)
	}
	sort.Strings(topics)
	for _, t := range topics {
		advice := "it syncs from core when the uplink is up (upstream.url)"
		if n.cfg.Upstream.URL == "" {
			advice = "upstream.url is empty, so it can never sync: set upstream.url or remove the route's schema_subject"
		}
		n.logger.Warn("node: routes name a schema this node does not know; on_unknown_schema applies to the topic",
			"topic", t, "reason", unknown[t], "on_unknown_schema", n.cfg.OnUnknownSchema, "advice", advice)
	}
	return nil
}

// deadLetterTopics lists the dead-letter topic of every topic with a
// schema that the routes do not already name, with the topic's partition
// count (a dead letter keeps its partition).
func deadLetterTopics(topics []route.TopicSpec) []route.TopicSpec {
	named := map[string]bool{}
	for _, t := range topics {
		named[t.Name] = true
	}
	var out []route.TopicSpec
	for _, t := range topics {
		if d := t.Name + route.DeadLetterSuffix; t.SchemaSubject != "" && !named[d] {
			out = append(out, route.TopicSpec{Name: d, Partitions: t.Partitions})
		}
	}
	return out
}

// checkStage adapts the schema check to the ingest pipeline's check stage
// (nil, so the pipeline skips the stage, when no route names a schema).
func (n *Node) checkStage() func(bmqtt.Publish) bmqtt.Verdict {
	c := n.checker
	if c == nil {
		return nil
	}
	return func(p bmqtt.Publish) bmqtt.Verdict {
		v := c.Check(schemacheck.Publish{
			Protocol: p.Protocol, QoS: p.QoS, LogTopic: p.LogTopic, Payload: p.Payload,
			ContentType: p.ContentType, UserProperties: p.UserProperties,
		})
		return bmqtt.Verdict{Refuse: v.Refuse, Code: v.Code, Reason: v.Reason, RedirectTo: v.RedirectTo, Headers: v.Headers}
	}
}
