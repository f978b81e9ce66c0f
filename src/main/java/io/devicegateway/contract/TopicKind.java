package io.devicegateway.contract;

/** What a device-to-cloud topic carries; the topic level after the device id names it. */
public enum TopicKind {
    TELEMETRY("telemetry"),
    EVENTS("events"),
    STATUS("status"),
    RESPONSES("responses");

    private final String level;

    TopicKind(String level) {
        this.level = level;
    }

    /** The topic level that names this kind, e.g. {@code telemetry}. */
    public String level() {
        return level;
    }

    static TopicKind fromLevel(String level) {
        for (TopicKind kind : values()) {
            if (kind.level.equals(level)) {
                return kind;
            }
        }
        return null;
    }
}
