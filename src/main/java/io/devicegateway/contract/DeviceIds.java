package io.devicegateway.contract;

/** The device-id rule shared by ingest, sessions and commands: {@code [A-Za-z0-9._:-]{1,128}}. */
public final class DeviceIds {

    public static final int MAX_LENGTH = 128;

    private DeviceIds() {
    }

    public static boolean isValid(String deviceId) {
        return deviceId != null && deviceId.length() <= MAX_LENGTH && isLevel(deviceId);
    }

    /**
     * One topic level of the grammar's alphabet {@code [A-Za-z0-9._:-]+} (device ids, streams, correlation ids).
     * A loop, not a regex: it runs several times for every device message.
     */
    public static boolean isLevel(String level) {
        int n = level.length();
        if (n == 0) {
            return false;
        }
        for (int i = 0; i < n; i++) {
            char c = level.charAt(i);
            boolean ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.'
                    || c == '_' || c == ':' || c == '-';
            if (!ok) {
                return false;
            }
        }
        return true;
    }
}
