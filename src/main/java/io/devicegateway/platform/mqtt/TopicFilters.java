package io.devicegateway.platform.mqtt;

/** MQTT topic-filter matching (the {@code +} and {@code #} wildcards), used to dispatch inbound messages. */
public final class TopicFilters {

    private TopicFilters() {
    }

    /** Walks both strings level by level without allocating: this runs once per inbound message. */
    public static boolean matches(String filter, String topic) {
        int f = 0;
        int t = 0;
        while (true) {
            int fEnd = levelEnd(filter, f);
            int tEnd = levelEnd(topic, t);
            int fLen = fEnd - f;
            if (fLen == 1 && filter.charAt(f) == '#') {
                return true;
            }
            boolean plus = fLen == 1 && filter.charAt(f) == '+';
            if (!plus && (fLen != tEnd - t || !filter.regionMatches(f, topic, t, fLen))) {
                return false;
            }
            boolean filterDone = fEnd == filter.length();
            boolean topicDone = tEnd == topic.length();
            if (filterDone || topicDone) {
                // "a/#" also matches "a" (the parent level)
                return filterDone == topicDone || (topicDone && fEnd + 2 == filter.length()
                        && filter.charAt(fEnd + 1) == '#');
            }
            f = fEnd + 1;
            t = tEnd + 1;
        }
    }

    private static int levelEnd(String s, int from) {
        int slash = s.indexOf('/', from);
        return slash < 0 ? s.length() : slash;
    }
}
