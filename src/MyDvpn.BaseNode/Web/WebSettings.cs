using MyDvpn.Common;

namespace MyDvpn.BaseNode.Web;

/// <summary>
/// The BaseNode's web topology page: served on <see cref="Address"/> (<c>--web HOST:PORT</c>; null: off, the default), over
/// TLS with the node's certificate; its login tokens live <see cref="DefaultTokenLifetime"/> unless asked otherwise, at most
/// <see cref="MaxTokenLifetime"/>.
/// </summary>
public sealed record WebSettings(HostPort? Address)
{
    public static readonly WebSettings Off = new((HostPort?)null);

    public static readonly TimeSpan DefaultTokenLifetime = TimeSpan.FromHours(1);
    public static readonly TimeSpan MaxTokenLifetime = TimeSpan.FromHours(24);
}
