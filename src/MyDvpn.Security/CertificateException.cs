namespace MyDvpn.Security;

/// <summary>
/// Thrown for anything an operator must fix (missing file, bad name, existing CA, wrong kind...).
/// The message says what is wrong and how to fix it.
/// </summary>
public sealed class CertificateException(string message, Exception? inner = null) : Exception(message, inner);
