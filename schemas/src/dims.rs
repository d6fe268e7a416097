//! The closed vocabularies of the `devices` and `countries` tables.
//!
//! Each is a small `Copy` value the collector derives from a request and
//! then forgets the request: a browser family is not a User-Agent string,
//! and a country is not an address. The written names are part of the file
//! format (analysts filter on them), so they live here, once.

use std::fmt;

/// Defines a fieldless enum with the name each value is written as.
macro_rules! named {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The name written to the files.
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The value written as `name`, if any.
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

named! {
    /// A browser family, as site owners name browsers. Versions are left
    /// out on purpose: they add rows, not insight, and narrow the crowd.
    Browser {
        Chrome => "Chrome",
        Firefox => "Firefox",
        Safari => "Safari",
        Edge => "Edge",
        Opera => "Opera",
        SamsungInternet => "Samsung Internet",
        Yandex => "Yandex Browser",
        UcBrowser => "UC Browser",
        Vivaldi => "Vivaldi",
        InternetExplorer => "Internet Explorer",
        Other => "Other",
    }
}

named! {
    /// An operating system family.
    Os {
        Windows => "Windows",
        MacOs => "macOS",
        Linux => "Linux",
        Ios => "iOS",
        Android => "Android",
        ChromeOs => "ChromeOS",
        Other => "Other",
    }
}

named! {
    /// A device class.
    Device {
        Desktop => "desktop",
        Mobile => "mobile",
        Tablet => "tablet",
    }
}

impl Device {
    /// The class of a screen this many CSS pixels wide: under 576 mobile,
    /// under 992 tablet, else desktop (the breakpoints of common CSS grids).
    pub fn from_screen_width(width: u32) -> Self {
        match width {
            0..576 => Device::Mobile,
            576..992 => Device::Tablet,
            _ => Device::Desktop,
        }
    }
}

/// An ISO 3166-1 alpha-2 country code: two ASCII uppercase letters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Country([u8; 2]);

impl Country {
    /// The code, uppercased, when `code` is two ASCII letters.
    pub fn new(code: &str) -> Option<Self> {
        match code.as_bytes() {
            &[a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Some(Self([a.to_ascii_uppercase(), b.to_ascii_uppercase()]))
            }
            _ => None,
        }
    }

    /// The code as written to the files.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("two ASCII letters")
    }
}

impl fmt::Debug for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Country({})", self.as_str())
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for &b in Browser::ALL {
            assert_eq!(Browser::from_name(b.name()), Some(b));
        }
        for &o in Os::ALL {
            assert_eq!(Os::from_name(o.name()), Some(o));
        }
        for &d in Device::ALL {
            assert_eq!(Device::from_name(d.name()), Some(d));
        }
        assert_eq!(Browser::from_name("chrome"), None);
    }

    #[test]
    fn screen_widths_map_to_classes_at_the_documented_breakpoints() {
        let got: Vec<_> = [0, 390, 575, 576, 820, 991, 992, 1920]
            .map(Device::from_screen_width)
            .to_vec();
        use Device::*;
        assert_eq!(
            got,
            [
                Mobile, Mobile, Mobile, Tablet, Tablet, Tablet, Desktop, Desktop
            ]
        );
    }

    #[test]
    fn countries_are_two_letters_uppercased() {
        assert_eq!(Country::new("de").unwrap().as_str(), "DE");
        assert_eq!(Country::new("GB").unwrap().to_string(), "GB");
        for bad in ["", "D", "DEU", "1A", "é", "D-"] {
            assert_eq!(Country::new(bad), None, "{bad:?}");
        }
    }
}
