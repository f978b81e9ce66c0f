package io.devicegateway.contract;

import java.util.regex.Pattern;

/** The device-id rule shared by ingest, sessions and commands: {@code [A-Za-z0-9._:-]{1,128}}. */
public final class DeviceIds {

    public static final int MAX_LENGTH = 128;
    private static final Pattern VALID = Pattern.compile("[A-Za-z0-9._:-]{1," + MAX_LENGTH + "}");

    private DeviceIds() {
    }

    public static boolean isValid(String deviceId) {
        return deviceId != null && VALID.matcher(deviceId).matches();
    }
}
