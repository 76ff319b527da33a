"""distill: distills a driving teacher into small camera students.

The compiled ops are in ``distill.ops`` (backed by the extension ``distill._C``); importing this
package stays cheap and loads neither torch nor the extension.
"""

__version__ = "0.1.0"
