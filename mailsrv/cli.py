def main():
    print("mailsrv")
