package io.devicegateway.contract;

/**
 * The one topic grammar of the gateway. Device-to-cloud topics are
 * {@code devices/{id}/telemetry[/{stream}]}, {@code devices/{id}/events[/{type}]},
 * {@code devices/{id}/status} and {@code devices/{id}/responses/{correlationId}[/{status}]}.
 *
 * @param deviceId the device id level
 * @param kind     what the topic carries
 * @param subtopic the levels after the kind joined with '/', "" when there are none
 */
public record DeviceTopic(String deviceId, TopicKind kind, String subtopic) {

    public static final String ROOT = "devices";
    /** Longest accepted subtopic (stream/type), in characters. */
    public static final int MAX_SUBTOPIC_LENGTH = 256;

    /** Result of parsing: either a topic or the reason it was rejected. */
    public record Parsed(DeviceTopic topic, RejectReason rejection) {
        public boolean ok() {
            return topic != null;
        }
    }

    /** Parses an MQTT topic name (not a filter) against the grammar. */
    public static Parsed parse(String topicName) {
        if (topicName == null) {
            return reject(RejectReason.TOPIC_NOT_IN_GRAMMAR);
        }
        String[] levels = topicName.split("/", -1);
        if (levels.length < 3 || !ROOT.equals(levels[0])) {
            return reject(RejectReason.TOPIC_NOT_IN_GRAMMAR);
        }
        TopicKind kind = TopicKind.fromLevel(levels[2]);
        if (kind == null) {
            return reject(RejectReason.TOPIC_NOT_IN_GRAMMAR);
        }
        if (!DeviceIds.isValid(levels[1])) {
            return reject(RejectReason.INVALID_DEVICE_ID);
        }
        if (kind == TopicKind.STATUS && levels.length != 3) {
            return reject(RejectReason.TOPIC_NOT_IN_GRAMMAR);
        }
        if (kind == TopicKind.RESPONSES && (levels.length < 4 || levels.length > 5)) {
            return reject(RejectReason.TOPIC_NOT_IN_GRAMMAR);
        }
        StringBuilder subtopic = new StringBuilder();
        for (int i = 3; i < levels.length; i++) {
            if (!DeviceIds.isLevel(levels[i])) {
                return reject(RejectReason.INVALID_STREAM);
            }
            if (i > 3) {
                subtopic.append('/');
            }
            subtopic.append(levels[i]);
        }
        if (subtopic.length() > MAX_SUBTOPIC_LENGTH) {
            return reject(RejectReason.INVALID_STREAM);
        }
        return new Parsed(new DeviceTopic(levels[1], kind, subtopic.toString()), null);
    }

    private static Parsed reject(RejectReason reason) {
        return new Parsed(null, reason);
    }
}
