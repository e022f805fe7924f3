namespace MyDvpn.Testbed;

/// <summary>The testbed could not do what was asked (set up, reach, tear down); the message says what and why.</summary>
public class TestbedException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>The machine cannot host a testbed (not root, not Linux, a program missing); the message says how to fix it.</summary>
public sealed class TestbedPrerequisiteException(string message) : TestbedException(message);
